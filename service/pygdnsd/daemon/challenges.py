"""The daemon's live ACME DNS-01 challenges: added in batches, each expiring ``acme_challenge_ttl`` later.

``ChallengeBook`` is the bookkeeping, sans I/O (every call is given the
time): batches as they came (one REQ_CHAL, or one batch of a REQ_TAK2
hand-off), oldest first, each with its expiry on CLOCK_MONOTONIC. It
refuses what gdnsd refuses (more than 200 live challenges for one name: a
runaway ACME client) and, beyond gdnsd, more than ``MAX_LIVE`` in all, so
that a client looping on REQ_CHAL cannot grow the daemon without bound.

``LiveChallenges`` is the daemon's: a book, a lock, and a thread that
expires each batch when its time comes. Every change (added, flushed,
expired, adopted from an old daemon) publishes the whole live set as a new
``ChallengeSet`` to whatever answers queries (``Instance.set_challenges``:
the instance's responder and every worker process); ``add`` and ``flush``
return only once it is published, so a client's ACK means every process
answers with the change.

Once handed over to a replacement (``handoff``), the set is sealed: an add
or flush would be lost with this daemon, so it raises ``HandedOver`` (the
client is told to retry, and reaches the new daemon) until ``resume`` (the
takeover failed). gdnsd needs no seal, as its one thread never runs a
request beside a takeover step; ours run on the control server's worker
thread, so a REQ_CHAL already running when the takeover began could
otherwise be acknowledged after its batch missed the hand-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pygdnsd.control.protocol import AcmeChallenge, ChallengeBatch
from pygdnsd.engine.challenges import ChallengeSet
from pygdnsd.errors import GdnsdError
from pygdnsd.zones import names

log = logging.getLogger("gdnsd")

# gdnsd's sanity limit: more live challenges than this for one name is "likely
# a runaway ACME automation script" (and would not fit a 16 KiB answer anyway).
MAX_PER_NAME = 200
# Ours, on all of them: 200 full gdnsdctl calls' worth. Each change rebuilds
# and republishes the whole set (to every worker process), so this also
# bounds the cost of one change.
MAX_LIVE = 20_000


class ChallengesRefused(GdnsdError):
    """A batch of challenges would break a limit; nothing of it was added."""


class HandedOver(GdnsdError):
    """The challenges went to a replacement daemon: changes must go there (retry later)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Challenges that came together and expire together (at ``expires``, CLOCK_MONOTONIC)."""

    expires: float
    challenges: tuple[AcmeChallenge, ...]


class ChallengeBook:
    """The live batches, oldest first, with gdnsd's limits; every method is told the time."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime  # acme_challenge_ttl, seconds
        self.batches: list[Batch] = []

    @property
    def count(self) -> int:
        return sum(len(batch.challenges) for batch in self.batches)

    @property
    def next_expiry(self) -> float | None:
        return min((batch.expires for batch in self.batches), default=None)

    def add(self, challenges: Sequence[AcmeChallenge], now: float, remaining: float = 0) -> Batch:
        """Add a batch expiring ``remaining`` seconds from ``now`` (0, or more than the lifetime: the lifetime)."""
        if not challenges:
            raise ChallengesRefused("no challenges to add")
        if self.count + len(challenges) > MAX_LIVE:
            raise ChallengesRefused(f"{len(challenges)} more challenges would be over the limit of {MAX_LIVE} live ones")
        per_name: dict[bytes, int] = {}
        for challenge in challenges:
            per_name[challenge.name] = per_name.get(challenge.name, 0) + 1
        for batch in self.batches:
            for challenge in batch.challenges:
                if challenge.name in per_name:
                    per_name[challenge.name] += 1
        for name, count in per_name.items():
            if count > MAX_PER_NAME:
                raise ChallengesRefused(
                    f"'{names.to_text(name)}' would have {count} live challenges, over the limit of "
                    f"{MAX_PER_NAME}: likely a runaway ACME client"
                )
        if not 0 < remaining <= self.lifetime:
            remaining = self.lifetime
        batch = Batch(now + remaining, tuple(challenges))
        self.batches.append(batch)
        return batch

    def expire(self, now: float) -> int:
        """Drop the batches due by ``now``; how many challenges went."""
        kept = [batch for batch in self.batches if batch.expires > now]
        gone = self.count - sum(len(batch.challenges) for batch in kept)
        self.batches = kept
        return gone

    def flush(self) -> int:
        gone = self.count
        self.batches = []
        return gone

    def handoff(self, now: float) -> list[ChallengeBatch]:
        """What REQ_TAK2 hands over: the batches with at least one whole second left, that many."""
        out = []
        for batch in self.batches:
            left = int(batch.expires - now)
            if left >= 1:
                out.append(ChallengeBatch(min(left, 0xFFFF), batch.challenges))
        return out

    def live(self, dns_ttl: int) -> ChallengeSet:
        """What the engine serves: every challenge, oldest first."""
        return ChallengeSet.build(
            ((challenge.name, challenge.payload) for batch in self.batches for challenge in batch.challenges), dns_ttl
        )


Publish = Callable[[ChallengeSet], None]


class LiveChallenges:
    """The daemon's challenges: a ``ChallengeBook`` under a lock, published on every change, expired on time.

    ``publish`` gets each new live set, in order (it is called under the
    lock); ``start`` runs the expiry thread, ``close`` ends it.
    """

    def __init__(
        self, lifetime: float, dns_ttl: int, publish: Publish, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.book = ChallengeBook(lifetime)
        self.dns_ttl = dns_ttl
        self.publish = publish
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = False
        self._sealed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="acme-expiry", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def add(self, challenges: Sequence[AcmeChallenge]) -> None:
        """Serve ``challenges`` for a lifetime; returns once they are served. ChallengesRefused if over a limit."""
        with self._lock:
            self._unsealed()
            self.book.add(challenges, self.clock())
            self._publish()
        log.debug("acme-dns-01: added %d challenges for %s", len(challenges), _names(challenges))

    def adopt(self, batches: Iterable[ChallengeBatch]) -> None:
        """Challenges a replaced daemon handed over (REQ_TAK2), each batch for its remaining seconds."""
        added = 0
        with self._lock:
            now = self.clock()
            for batch in batches:
                try:
                    self.book.add(batch.challenges, now, batch.remaining)
                except ChallengesRefused as exc:
                    log.error("acme-dns-01: not carrying over challenges from the old daemon: %s", exc)
                    continue
                added += len(batch.challenges)
            if added:
                self._publish()
        if added:
            log.info("acme-dns-01: carried over %d challenges from the old daemon", added)

    def flush(self) -> None:
        """Stop serving every challenge; returns once none is served. HandedOver once sealed."""
        with self._lock:
            self._unsealed()
            gone = self.book.flush()
            self._publish()
        log.debug("acme-dns-01: flushed %d challenges", gone)

    def handoff(self) -> list[ChallengeBatch]:
        """The live batches for a replacement (REQ_TAK2); sealed from now on."""
        with self._lock:
            self._sealed = True
            return self.book.handoff(self.clock())

    def resume(self) -> None:
        """The replacement failed: changes are ours to make again."""
        with self._lock:
            self._sealed = False

    def _unsealed(self) -> None:
        if self._sealed:
            raise HandedOver("a replace is taking the challenges over")

    @property
    def count(self) -> int:
        with self._lock:
            return self.book.count

    def _publish(self) -> None:
        self.publish(self.book.live(self.dns_ttl))
        self._changed.notify_all()  # the expiry thread's next deadline may have moved

    def _run(self) -> None:
        with self._lock:
            while not self._closing:
                due = self.book.next_expiry
                now = self.clock()
                if due is not None and due <= now:
                    gone = self.book.expire(now)
                    try:
                        self._publish()
                    except Exception:  # a failed publish must not end expiry for good
                        log.exception("acme-dns-01: publishing after expiry failed")
                    log.debug("acme-dns-01: %d challenges expired", gone)
                    continue
                self._changed.wait(None if due is None else due - now)


def _names(challenges: Sequence[AcmeChallenge]) -> str:
    shown = sorted({names.to_text(challenge.name) for challenge in challenges})
    return ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
