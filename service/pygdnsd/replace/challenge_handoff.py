"""The live ACME challenges a takeover carries (REQ_TAK2), in gdnsd 3.8.1's layout.

gdnsd keeps challenges in sets, one per REQ_CHAL (one ``gdnsdctl
acme-dns-01`` run), each set expiring ``acme_challenge_ttl`` seconds after it
was added. Its TAK2 answer is RESP_ACK with ``v`` = the number of sets and
``d`` = the bytes that follow; each set is (observed on 3.8.1, native byte
order, as every ``d``)::

    u16 length of the challenges that follow
    u16 seconds the set has left to live
    u8  number of challenges
    the challenges, each as REQ_CHAL sends them: u8 name length, the name
    in wire form, the 43-byte payload, a NUL

Both daemon kinds speak this one form, so challenges survive a takeover in
either direction with their remaining lifetime. Whatever stores challenges
in the daemon gives its live sets to ``encode_sets`` and takes received ones
from ``decode_sets``; ``HeldChallenges`` is a store that only carries sets
from one generation to the next.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pygdnsd.control import protocol
from pygdnsd.control.protocol import AcmeChallenge, ProtocolError

_SET_HEADER = struct.Struct("=HHB")
MAX_SETS = protocol.MAX_COUNT
MAX_SET_CHALLENGES = 0xFF
MAX_SET_BYTES = 0xFFFF
MAX_SECONDS_LEFT = 0xFFFF


@dataclass(frozen=True, slots=True)
class ChallengeSet:
    """Challenges added together, and the whole seconds they have left to live."""

    challenges: tuple[AcmeChallenge, ...]
    seconds_left: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.challenges) <= MAX_SET_CHALLENGES:
            raise ProtocolError(f"a challenge set holds 1 to {MAX_SET_CHALLENGES} challenges, not {len(self.challenges)}")
        if not 0 <= self.seconds_left <= MAX_SECONDS_LEFT:
            raise ProtocolError(f"a challenge set's lifetime of {self.seconds_left} s does not fit 16 bits")


def encode_sets(sets: Sequence[ChallengeSet]) -> tuple[int, bytes]:
    """The TAK2 ACK's count (``v``) and data."""
    if len(sets) > MAX_SETS:
        raise ProtocolError(f"{len(sets)} challenge sets do not fit a 24-bit count")
    out = bytearray()
    for one in sets:
        body = protocol.encode_challenges(one.challenges)
        if len(body) > MAX_SET_BYTES:
            raise ProtocolError(f"a challenge set of {len(body)} bytes does not fit 16 bits")
        out += _SET_HEADER.pack(len(body), one.seconds_left, len(one.challenges))
        out += body
    return len(sets), bytes(out)


def decode_sets(count: int, data: bytes) -> list[ChallengeSet]:
    """Inverse of ``encode_sets``: exactly ``count`` sets filling ``data``; ProtocolError otherwise."""
    found: list[ChallengeSet] = []
    pos = 0
    while pos < len(data):
        if len(found) >= count:
            raise ProtocolError(f"challenge hand-off holds more than the {count} sets announced")
        if pos + _SET_HEADER.size > len(data):
            raise ProtocolError("challenge hand-off ends inside a set header")
        length, seconds_left, members = _SET_HEADER.unpack_from(data, pos)
        pos += _SET_HEADER.size
        if pos + length > len(data):
            raise ProtocolError(f"challenge set of {length} bytes runs past the hand-off's end")
        challenges = protocol.decode_challenges(members, data[pos : pos + length])
        found.append(ChallengeSet(tuple(challenges), seconds_left))
        pos += length
    if len(found) != count:
        raise ProtocolError(f"challenge hand-off holds {len(found)} sets, {count} announced")
    return found


class HeldChallenges:
    """Sets received from the previous daemon, handed on at the next takeover until they expire.

    A daemon that does not (yet) answer challenges itself still carries
    them, so a takeover chain through it loses none.
    """

    def __init__(self) -> None:
        self._sets: list[tuple[tuple[AcmeChallenge, ...], float]] = []  # (challenges, monotonic deadline)

    def add(self, sets: Iterable[ChallengeSet]) -> None:
        now = time.monotonic()
        self._sets += [(one.challenges, now + one.seconds_left) for one in sets if one.seconds_left > 0]

    def live(self) -> list[ChallengeSet]:
        now = time.monotonic()
        # Whole seconds, as gdnsd counts: a set with less than one left is as good as gone.
        self._sets = [(challenges, deadline) for challenges, deadline in self._sets if deadline - now >= 1]
        return [
            ChallengeSet(challenges, min(MAX_SECONDS_LEFT, int(deadline - now))) for challenges, deadline in self._sets
        ]

    def __len__(self) -> int:
        return sum(len(challenges) for challenges, _ in self._sets)
