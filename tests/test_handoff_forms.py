"""The takeover's final counters (PSH_SHAND) in gdnsd 3.8.1's layout.

The counter order was learned from a gdnsd 3.8.1 new daemon fed distinct
values (replace/stats_handoff.py). The challenge batches (TAK2) are the
control protocol's, tested against a capture in tests/test_control_protocol.py.
"""

from __future__ import annotations

from pygdnsd.engine.stats import DNS_COUNTERS, TCP_COUNTERS, UDP_COUNTERS, Stats
from pygdnsd.replace import stats_handoff


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
