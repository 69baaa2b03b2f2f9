"""The takeover's payloads in gdnsd 3.8.1's layout: challenge sets (TAK2) and final counters (PSH_SHAND).

The reference bytes were captured from Debian's gdnsd 3.8.1 (its TAK2 answer
with two ``gdnsdctl acme-dns-01`` runs live), and the counter order from a
gdnsd 3.8.1 new daemon fed distinct values (replace/stats_handoff.py).
"""

from __future__ import annotations

import time

import pytest

from pygdnsd.control.protocol import AcmeChallenge, ProtocolError
from pygdnsd.engine.stats import DNS_COUNTERS, TCP_COUNTERS, UDP_COUNTERS, Stats
from pygdnsd.replace import challenge_handoff, stats_handoff
from pygdnsd.replace.challenge_handoff import ChallengeSet, HeldChallenges

PAYLOAD_1 = b"0123456789012345678901234567890123456789012"
PAYLOAD_2 = b"abcdefghijabcdefghijabcdefghijabcdefghij_-A"
WWW = b"\x03www\x07example\x03com\x00"
APEX = b"\x07example\x03com\x00"
A = b"\x01a\x07example\x03com\x00"
# gdnsd 3.8.1's TAK2 answer (v = 2, d = 190): a set of two 581 s from expiry, a set of one 597 s from it.
GDNSD_TAK2 = (
    b"x\x00E\x02\x02" + b"\x11" + WWW + PAYLOAD_1 + b"\x00" + b"\r" + APEX + PAYLOAD_2 + b"\x00"
    + b"<\x00U\x02\x01" + b"\x0f" + A + PAYLOAD_1 + b"\x00"
)


def test_gdnsd_challenge_sets_decode_and_encode_to_the_same_bytes() -> None:
    sets = challenge_handoff.decode_sets(2, GDNSD_TAK2)
    assert sets == [
        ChallengeSet((AcmeChallenge(WWW, PAYLOAD_1), AcmeChallenge(APEX, PAYLOAD_2)), 581),
        ChallengeSet((AcmeChallenge(A, PAYLOAD_1),), 597),
    ]
    assert challenge_handoff.encode_sets(sets) == (2, GDNSD_TAK2)
    assert challenge_handoff.encode_sets([]) == (0, b"")
    assert challenge_handoff.decode_sets(0, b"") == []


@pytest.mark.parametrize(
    ("count", "data", "why"),
    [
        (1, GDNSD_TAK2, "more than the 1 sets"),
        (3, GDNSD_TAK2, "holds 2 sets, 3 announced"),
        (2, GDNSD_TAK2[:-1], "runs past"),
        (1, b"x\x00E", "ends inside a set header"),
        (1, b"\x3e\x00E\x02\x02" + b"\x11" + WWW + PAYLOAD_1 + b"\x00", "2 announced"),
        (1, b"\x3e\x00E\x02\x01" + b"\x11" + WWW + PAYLOAD_1 + b"X", "NUL-terminated"),
        (1, b"\x00\x00E\x02\x00", "1 to 255 challenges"),
    ],
)
def test_malformed_challenge_sets_are_refused(count: int, data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        challenge_handoff.decode_sets(count, data)


def test_held_challenges_are_handed_on_with_what_they_have_left_until_they_expire() -> None:
    held = HeldChallenges()
    held.add([ChallengeSet((AcmeChallenge(A, PAYLOAD_1),), 300), ChallengeSet((AcmeChallenge(WWW, PAYLOAD_2),), 2)])
    assert [one.seconds_left for one in held.live()] == [299, 1]  # whole seconds, rounded down
    deadline = time.monotonic() + 5
    while len(held.live()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Under a second left is as good as gone: handed on, it would expire on arrival.
    assert [one.challenges[0].name for one in held.live()] == [A]
    assert len(held) == 1


def test_our_counters_are_exactly_gdnsds() -> None:
    ours = {
        *(("stats", name) for name in DNS_COUNTERS),
        *(("udp", name) for name in UDP_COUNTERS),
        *(("tcp", name) for name in TCP_COUNTERS),
    }
    assert ours == set(stats_handoff.GDNSD_STATS_ORDER)
    assert len(stats_handoff.GDNSD_STATS_ORDER) == 35


def test_final_counters_round_trip_in_gdnsds_slots() -> None:
    stats = Stats()
    stats.dns.bump("noerror", 5)
    stats.udp.bump("recvfail", 2)
    stats.udp.bump("reqs", 7)
    stats.tcp.bump("acceptfail", 1)
    slots = stats_handoff.encode(stats.snapshot(), 1_700_000_000)
    assert len(slots) == 36
    assert (slots[0], slots[12], slots[22], slots[34], slots[35]) == (2, 5, 7, 1, 1_700_000_000)
    final = stats_handoff.decode(slots)
    assert final.counters == stats.snapshot() and final.started == 1_700_000_000


def test_final_counters_from_peers_with_more_or_fewer_slots_read_as_gdnsd_reads_them() -> None:
    # Measured on gdnsd 3.8.1: the first 35 slots are counters, the last one the start time.
    more = stats_handoff.decode([*range(1, 40), 99])
    assert more.counters["tcp"]["acceptfail"] == 35 and more.started == 99
    fewer = stats_handoff.decode([1, 2, 3, 4, 5, 77])
    assert fewer.counters["udp"] == {"recvfail": 1, "sendfail": 2, "tc": 3, "edns_big": 4, "edns_tc": 5}
    assert fewer.counters["stats"] == {} and fewer.started == 77
    assert stats_handoff.decode([]).started is None
