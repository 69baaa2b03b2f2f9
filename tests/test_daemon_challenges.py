"""The daemon's live ACME challenges (``daemon.challenges``): lifetimes, expiry, limits, hand-off."""

from __future__ import annotations

import re
import threading
import time

import pytest

from pygdnsd.control.protocol import AcmeChallenge, ChallengeBatch, parse_acme_challenge
from pygdnsd.daemon.challenges import (
    MAX_LIVE,
    MAX_PER_NAME,
    ChallengeBook,
    ChallengesRefused,
    HandedOver,
    LiveChallenges,
)
from pygdnsd.engine.challenges import EMPTY, ChallengeSet
from pygdnsd.zones import names

PAYLOADS = [f"{i:043d}" for i in range(3)]


def challenge(name: str, payload: str = PAYLOADS[0]) -> AcmeChallenge:
    return parse_acme_challenge(name, payload)


def served(live: ChallengeSet) -> dict[str, list[bytes]]:
    return {names.to_text(name): [rdata[1:] for rdata in rrset.rdatas] for name, rrset in live.by_name.items()}


# -- the book (sans I/O) ----------------------------------------------------------


def test_a_batch_lives_for_the_lifetime_and_goes_at_once() -> None:
    book = ChallengeBook(600)
    book.add([challenge("a.example."), challenge("b.example.")], now=1000.0)
    book.add([challenge("c.example.")], now=1010.0)
    assert book.count == 3 and book.next_expiry == 1600.0
    assert book.expire(1599.9) == 0
    assert book.expire(1600.0) == 2
    assert served(book.live(0)) == {"c.example.": [PAYLOADS[0].encode()]}
    assert book.next_expiry == 1610.0
    assert book.expire(1610.0) == 1 and book.count == 0 and book.next_expiry is None


@pytest.mark.parametrize(("remaining", "expires"), [(0, 1600.0), (42, 1042.0), (600, 1600.0), (601, 1600.0), (-3, 1600.0)])
def test_a_handed_over_batch_keeps_what_is_left_of_its_lifetime(remaining: int, expires: float) -> None:
    # gdnsd's rule: 0 or more than our acme_challenge_ttl means a whole one.
    book = ChallengeBook(600)
    assert book.add([challenge("a.example.")], now=1000.0, remaining=remaining).expires == expires


def test_the_handoff_says_the_whole_seconds_left_and_skips_the_nearly_gone() -> None:
    book = ChallengeBook(600)
    first = [challenge("a.example."), challenge("b.example.", PAYLOADS[1])]
    book.add(first, now=1000.0)
    book.add([challenge("c.example.")], now=1002.5)
    assert book.handoff(1003.2) == [ChallengeBatch(596, tuple(first)), ChallengeBatch(599, (challenge("c.example."),))]
    # Under a second left: not handed over (0 would read as a whole lifetime to gdnsd).
    assert [batch.remaining for batch in book.handoff(1599.5)] == [3]


def test_payloads_are_served_oldest_first_per_name() -> None:
    book = ChallengeBook(600)
    book.add([challenge("a.example.", PAYLOADS[2]), challenge("b.example.")], now=0.0)
    book.add([challenge("a.example.", PAYLOADS[0]), challenge("a.example.", PAYLOADS[1])], now=1.0)
    assert served(book.live(0)) == {
        "a.example.": [PAYLOADS[2].encode(), PAYLOADS[0].encode(), PAYLOADS[1].encode()],
        "b.example.": [PAYLOADS[0].encode()],
    }
    assert book.live(17).by_name[names.from_text("a.example.")].ttl == 17
    assert book.flush() == 4 and book.live(0) == EMPTY


def test_more_than_200_live_challenges_for_one_name_are_refused_whole() -> None:
    book = ChallengeBook(600)
    for _ in range(MAX_PER_NAME // 100):
        book.add([challenge("busy.example.")] * 100, now=0.0)
    with pytest.raises(ChallengesRefused, match=re.escape("'busy.example.' would have 201 live challenges, over the limit of 200")):
        book.add([challenge("other.example."), challenge("busy.example.")], now=0.0)
    assert book.count == MAX_PER_NAME  # nothing of the refused batch
    book.expire(600.0)
    book.add([challenge("busy.example.")], now=601.0)  # room again once some expired


def test_the_live_total_is_bounded() -> None:
    book = ChallengeBook(600)
    for i in range(MAX_LIVE // 100):
        book.add([challenge(f"n{i}-{j}.example.") for j in range(100)], now=0.0)
    with pytest.raises(ChallengesRefused, match=f"over the limit of {MAX_LIVE}"):
        book.add([challenge("one.more.example.")], now=0.0)
    with pytest.raises(ChallengesRefused):
        book.add([], now=0.0)


# -- live, with its expiry thread --------------------------------------------------


class Published:
    def __init__(self) -> None:
        self.sets: list[ChallengeSet] = []
        self.changed = threading.Condition()

    def __call__(self, live: ChallengeSet) -> None:
        with self.changed:
            self.sets.append(live)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ChallengeSet]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.sets) >= count, timeout)
            return list(self.sets)


def test_challenges_are_published_on_each_change_and_expire_on_time() -> None:
    published = Published()
    live = LiveChallenges(0.4, 0, published)
    live.start()
    try:
        started = time.monotonic()
        live.add([challenge("a.example.")])
        assert served(published.sets[-1]) == {"a.example.": [PAYLOADS[0].encode()]}  # before add returned
        time.sleep(0.2)
        live.add([challenge("b.example.")])
        sets = published.wait_for(3)
        assert served(sets[2]) == {"b.example.": [PAYLOADS[0].encode()]}  # a.example. expired first
        assert time.monotonic() - started >= 0.4
        sets = published.wait_for(4)
        assert sets[3] == EMPTY and live.count == 0
    finally:
        live.close()


def test_a_flush_publishes_nothing_live_and_stops_the_expiry() -> None:
    published = Published()
    live = LiveChallenges(0.3, 0, published)
    live.start()
    try:
        live.add([challenge("a.example.")])
        live.flush()
        assert published.sets[-1] == EMPTY
        time.sleep(0.5)
        assert len(published.sets) == 2  # nothing left to expire
    finally:
        live.close()


def test_adopted_batches_serve_for_their_remaining_seconds_and_bad_ones_are_skipped() -> None:
    published = Published()
    live = LiveChallenges(600, 0, published)
    live.adopt(
        [
            ChallengeBatch(30, (challenge("a.example."),)),
            ChallengeBatch(90, tuple(challenge("busy.example.") for _ in range(MAX_PER_NAME + 1))),
            ChallengeBatch(0, (challenge("b.example."),)),
        ]
    )
    assert len(published.sets) == 1 and set(served(published.sets[0])) == {"a.example.", "b.example."}
    assert [batch.remaining for batch in live.handoff()] == [29, 599]
    live.adopt([])
    assert len(published.sets) == 1  # nothing adopted, nothing to publish


def test_once_handed_over_changes_wait_for_the_replacement_or_its_failure() -> None:
    published = Published()
    live = LiveChallenges(600, 0, published)
    live.add([challenge("a.example.")])
    assert [len(batch.challenges) for batch in live.handoff()] == [1]
    # An add or flush now would be lost with this daemon: the client must retry (RESP_LATR).
    with pytest.raises(HandedOver):
        live.add([challenge("b.example.")])
    with pytest.raises(HandedOver):
        live.flush()
    assert len(published.sets) == 1 and live.count == 1
    live.resume()  # the takeover failed: ours again
    live.add([challenge("b.example.")])
    live.flush()
    assert published.sets[-1] == EMPTY
