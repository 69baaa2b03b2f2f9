"""Engine: prebuilt answers (caching, A/AAAA rotation, reload swaps) and the stats counters."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from engine_support import (
    DEFAULT_ZONES,
    EXAMPLE_COM,
    MX,
    SOA,
    TXT,
    V4,
    V6,
    A,
    Message,
    ask,
    engine_fixture,
    opt_rr,
    option,
    parse,
    query,
    responder,
    wire_name,
    write_zones,
    zones_fixture,
)
from pygdnsd.engine.responder import Responder
from pygdnsd.zones.model import ZoneSet

zones = zones_fixture()
engine = engine_fixture()


def addresses(msg: Message) -> list[bytes]:
    return [rr.rdata for rr in msg.answer if rr.rtype == A]


# -- repeated questions ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype"),
    [("example.com", MX), ("txt.example.com", TXT), ("nope.example.com", A), ("deleg.example.com", A), ("q.wild.example.com", MX)],
)
def test_same_question_twice_gives_the_same_bytes(engine: Responder, name: str, qtype: int) -> None:
    first = engine.respond(query(name, qtype), V4, False)
    assert first is not None
    assert engine.respond(query(name, qtype), V4, False) == first
    # Case changes only the echoed question (and what points at it).
    upper = engine.respond(query(name.upper(), qtype), V4, False)
    assert upper is not None
    assert upper.lower() == first.lower()


def test_repeated_address_answers_differ_only_by_rotation(engine: Responder) -> None:
    first = ask(engine, "www.example.com")
    second = ask(engine, "www.example.com")
    assert sorted(addresses(first)) == sorted(addresses(second))
    assert len(first.raw) == len(second.raw)
    assert first.raw[:12 + len(first.question)] == second.raw[:12 + len(second.question)]


def test_rotation_puts_every_record_in_every_position(engine: Responder) -> None:
    seen = [ask(engine, "www.example.com") for _ in range(3)]
    orders = [addresses(msg) for msg in seen]
    for position in range(3):
        assert len({order[position] for order in orders}) == 3


def test_rotation_only_moves_address_records(tmp_path: Path) -> None:
    zones = write_zones(tmp_path, {"example.com": EXAMPLE_COM + "multi MX 10 a\n MX 20 b\n MX 30 c\n"})
    engine = responder(zones)
    first = engine.respond(query("multi.example.com", MX), V4, False)
    assert all(engine.respond(query("multi.example.com", MX), V4, False) == first for _ in range(4))


def test_every_record_of_a_large_set_comes_first_sometimes(engine: Responder) -> None:
    firsts = {addresses(ask(engine, "big.example.com", tcp=True))[0] for _ in range(200)}
    assert len(firsts) == 40


# -- reloads ---------------------------------------------------------------


def test_set_zones_swaps_answers_at_once(tmp_path: Path, zones: ZoneSet) -> None:
    engine = responder(zones)
    assert addresses(ask(engine, "mail.example.com")) == [bytes((192, 0, 2, 25))]
    assert ask(engine, "new.example.com").rcode == 3
    assert ask(engine, "q.wild.example.com").answer
    changed = EXAMPLE_COM.replace("mail    A   192.0.2.25", "mail    A   192.0.2.26\nnew A 192.0.2.27")
    changed = changed.replace("*.wild  A   192.0.2.100", "*.wild  A   192.0.2.101")
    new_zones = write_zones(tmp_path, {"example.com": changed})
    engine.set_zones(new_zones)
    assert engine.zones is new_zones
    assert addresses(ask(engine, "mail.example.com")) == [bytes((192, 0, 2, 26))]
    assert addresses(ask(engine, "new.example.com")) == [bytes((192, 0, 2, 27))]
    assert addresses(ask(engine, "other.wild.example.com")) == [bytes((192, 0, 2, 101))]
    assert ask(engine, "www.example.net").rcode == 5  # example.net is gone


# -- shared tails and compression ------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["a.wild.example.com", "b.c.wild.example.com", "Deep.Er.Still.Wild.Example.Com", "z.wild.example.com"],
        ["nope.example.com", "x.nope.example.com", "a.b.c.example.com", "zzzz.example.com"],
        ["deleg.example.com", "x.deleg.example.com", "ns1.deleg.example.com", "a.b.deleg.example.com"],
    ],
    ids=["wildcard", "nxdomain", "referral"],
)
def test_names_sharing_a_decision_each_get_correct_compression(engine: Responder, names: list[str]) -> None:
    for qtype in (A, MX):
        for name in names:
            msg = ask(engine, name, qtype)
            fresh = ask(responder(engine.zones), name, qtype)
            # Decoding resolves every pointer (the parser rejects bad ones) to the same records.
            assert [(rr.owner.lower(), rr.rtype, rr.ttl) for rr in msg.answer + msg.authority + msg.additional] == [
                (rr.owner.lower(), rr.rtype, rr.ttl) for rr in fresh.answer + fresh.authority + fresh.additional
            ]
            for rr in msg.answer:
                assert rr.owner == wire_name(name)
            for rr in msg.authority:
                if rr.rtype == SOA:
                    assert msg.name_at(rr.rdata_at).lower() == wire_name("ns1.example.com")
            assert len(msg.raw) == len(fresh.raw)


def test_an_nxdomain_name_that_is_a_compression_target_is_not_given_a_shared_tail(engine: Responder) -> None:
    # Same decision (NXDOMAIN under the apex) at the same depth; the second
    # qname is the SOA's rname, so gdnsd compresses the rname into the question.
    ask(engine, "abcdefghij.example.com")
    raw = engine.respond(query("hostmaster.example.com"), V4, False)
    gdnsd = bytes.fromhex(
        "1234850300010000000100000a686f73746d6173746572076578616d706c6503636f6d0000010001"
        "c0170006000100000384001c036e7331c017c00c0000000100001c20000007080003f48000000384"
    )
    assert raw == gdnsd


# -- stats -----------------------------------------------------------------


def test_counters_bumped_per_response(zones: ZoneSet) -> None:
    engine = responder(zones, cookie_secret=bytes(32))
    cookie = b"ABCDEFGH"
    ask(engine, "www.example.com")  # noerror
    ask(engine, "nope.example.com")  # nxdomain
    ask(engine, "www.example.org")  # refused
    engine.respond(query("www.example.com", opcode=2), V4, False)  # notimp
    engine.respond(query("www.example.com", edns=opt_rr(version=1)), V4, False)  # badvers
    engine.respond(query("www.example.com", edns=opt_rr(options=option(10, b"short"))), V4, False)  # formerr
    engine.respond(b"\x00" * 5, V4, False)  # dropped
    engine.respond(query("www.example.com", edns=opt_rr(do=True)), V6, False)
    engine.respond(query("www.example.com", edns=opt_rr(options=option(8, b"\x00\x01\x00\x00"))), V4, False)
    init = parse(engine.respond(query("www.example.com", edns=opt_rr(options=option(10, cookie))), V4, False))
    full = dict(init.options)[10]
    engine.respond(query("www.example.com", edns=opt_rr(options=option(10, full))), V4, False)
    engine.respond(query("www.example.com", edns=opt_rr(options=option(10, cookie + bytes(8)))), V4, False)
    engine.respond(query("big.example.com"), V4, False)  # truncated, still noerror
    assert engine.stats.snapshot()["stats"] == {
        "noerror": 7,
        "refused": 1,
        "nxdomain": 1,
        "notimp": 1,
        "badvers": 1,
        "formerr": 1,
        "dropped": 1,
        "v6": 1,
        "edns": 7,  # badvers and formerr answers carry an OPT too
        "edns_clientsub": 1,
        "edns_do": 1,
        "edns_cookie_formerr": 1,
        "edns_cookie_ok": 1,
        "edns_cookie_init": 1,
        "edns_cookie_bad": 1,
    }
    assert engine.stats.udp["tc"] == 1
    assert engine.stats.tcp["reqs"] == 0  # transports count requests, not the engine


def test_answers_stay_right_when_the_caches_are_flushed(zones: ZoneSet, monkeypatch: pytest.MonkeyPatch) -> None:
    from pygdnsd.engine import answer_cache

    monkeypatch.setattr(answer_cache, "MAX_QUESTIONS", 2)
    engine = responder(zones)
    reference = responder(zones)
    names = ["a.nope.example.com", "b.nope.example.com", "mail.example.com", "q.wild.example.com", "c.nope.example.com"]
    for _ in range(2):
        for name in names:
            assert engine.respond(query(name, MX), V4, False) == reference.respond(query(name, MX), V4, False)


def test_decide_without_a_zone_is_refused(zones: ZoneSet) -> None:
    from pygdnsd.engine import lookup

    assert lookup.decide(zones, wire_name("www.example.org"), A, False) is lookup.REFUSED
    decision = lookup.decide(zones, wire_name("mail.example.com"), A, False)
    assert (decision.rcode, decision.authoritative, len(decision.answer)) == (0, True, 1)


def test_stats_carry_over_and_json_shape(zones: ZoneSet) -> None:
    old = responder(zones)
    ask(old, "www.example.com")
    ask(old, "nope.example.com")
    new = responder(zones)
    ask(new, "www.example.com")
    new.stats.absorb(old.stats.snapshot())
    new.stats.absorb({"stats": {"noerror": "x", "unknown": 5}, "udp": {"tc": 2}})
    shaped = new.stats.as_json_dict(uptime=7)
    assert list(shaped) == ["uptime", "stats", "udp", "tcp"]
    assert shaped["uptime"] == 7
    assert shaped["stats"]["noerror"] == 2
    assert shaped["stats"]["nxdomain"] == 1
    assert "unknown" not in shaped["stats"]
    assert shaped["udp"]["tc"] == 2


# -- whole UDP responses remembered per query ---------------------------------

REMEMBERED_CASES = [
    # (name, qtype, qclass, edns OPT or None, rd)
    ("mail.example.com", A, 1, None, True),
    ("mail.example.com", A, 1, None, False),
    ("MAIL.example.com", A, 1, opt_rr(do=True), True),
    ("mail.example.com", A, 1, opt_rr(size=1232), True),
    ("example.com", MX, 1, opt_rr(do=True), True),
    ("nope.example.com", A, 1, None, True),
    ("q.wild.example.com", MX, 1, opt_rr(), True),
    ("deleg.example.com", A, 1, opt_rr(do=True), True),
    ("www.example.org", A, 1, None, True),  # refused
    ("version.bind", TXT, 3, None, True),  # CHAOS
    ("bigtxt.example.com", TXT, 1, None, True),  # truncated without EDNS
    ("bigtxt.example.com", TXT, 1, opt_rr(size=512), True),  # truncated with EDNS
    ("bigtxt.example.com", TXT, 1, opt_rr(size=4096), True),  # over 512 bytes (v4), truncated (v6)
    ("mid.example.com", TXT, 1, opt_rr(size=4096, do=True), True),
]


def test_repeated_udp_queries_get_the_bytes_and_counts_of_a_fresh_answer(tmp_path: Path) -> None:
    # An unrotated answer of about 750 bytes; IPv6 clients get a smaller
    # limit, so the same query bytes must not share one response across families.
    big_txt = "bigtxt TXT " + " ".join(f'"{letter * 250}"' for letter in "xyz") + "\n"
    zones = write_zones(tmp_path, {**DEFAULT_ZONES, "example.com": EXAMPLE_COM + big_txt})
    settings = {"max_edns_response": 4096, "max_edns_response_v6": 600}
    engine = responder(zones, **settings)
    fresh_stats = responder(zones).stats
    for round_ in range(4):
        for client in (V4, V6):
            for n, (name, qtype, qclass, edns, rd) in enumerate(REMEMBERED_CASES):
                wire = query(name, qtype, qclass, ident=round_ * 100 + n, rd=rd, edns=edns)
                fresh = Responder(zones, engine.settings, fresh_stats)
                assert engine.respond(wire, client, False) == fresh.respond(wire, client, False), (name, round_)
    assert engine.stats.snapshot() == fresh_stats.snapshot()
    assert engine.stats.udp["tc"] > 0 and engine.stats.udp["edns_big"] > 0 and engine.stats.udp["edns_tc"] > 0
    assert engine.stats.dns["refused"] == 8


def test_remembered_responses_end_with_a_reload(tmp_path: Path, zones: ZoneSet) -> None:
    engine = responder(zones)
    for _ in range(3):  # built, then shared, then remembered whole
        assert addresses(ask(engine, "mail.example.com")) == [bytes((192, 0, 2, 25))]
    changed = EXAMPLE_COM.replace("mail    A   192.0.2.25", "mail    A   192.0.2.26")
    engine.set_zones(write_zones(tmp_path, {"example.com": changed}))
    assert addresses(ask(engine, "mail.example.com")) == [bytes((192, 0, 2, 26))]


def test_rotated_answers_are_not_remembered_whole(engine: Responder) -> None:
    wire = query("www.example.com")
    answers = {engine.respond(wire, V4, False) for _ in range(6)}
    assert len(answers) == 3


def test_tcp_answers_are_not_remembered(engine: Responder) -> None:
    wire = query("mail.example.com", edns=opt_rr())
    for _ in range(3):
        udp_answer = engine.respond(wire, V4, False)
        tcp_answer = engine.respond(wire, V4, True)
        assert udp_answer is not None and tcp_answer is not None
        assert udp_answer != tcp_answer  # TCP carries the keepalive option


def test_caches_stay_out_of_garbage_collections_once_frozen(zones: ZoneSet) -> None:
    # What daemon.gc_freeze.settle does after loading: collect, then freeze.
    # Caches filled while serving must not become young objects that every
    # full collection walks again (that stalled every query for tens of ms).
    engine = responder(zones)
    gc.collect()
    gc.freeze()
    try:
        for name in ("mail.example.com", "nope.example.com", "q.wild.example.com", "deleg.example.com"):
            for _ in range(3):
                engine.respond(query(name, MX), V4, False)
        cached = engine._cache
        assert any(cached.answers_v4)  # remembered whole...
        for part in cached.answers_v4:
            assert not gc.is_tracked(part)  # ...in dicts the collector ignores
        young = {id(obj) for obj in gc.get_objects()}
        for cache in (cached.by_question, cached.by_tail, cached.by_rrset, cached.layouts):
            assert cache
            for part in cache:
                assert id(part) not in young
    finally:
        gc.unfreeze()


def test_cache_entries_leave_the_collector_at_its_first_look(zones: ZoneSet) -> None:
    # Entries made for first-seen questions must not reach the older
    # generations: every gen-1/gen-2 collection walked thousands of them
    # (1-10 ms pauses). The collector untracks a tuple of atoms the first
    # time it sees it, whatever the order it looks at objects in; a tuple
    # holding tuples can outlive that look.
    engine = responder(zones)
    for name in ("mail.example.com", "nope.example.com", "q.wild.example.com", "deleg.example.com", "example.com"):
        for qtype in (A, MX, TXT, SOA):
            engine.respond(query(name, qtype), V4, False)
    gc.collect(0)
    cached = engine._cache
    for cache in (cached.by_question, cached.by_tail, cached.by_rrset, cached.layouts):
        entries = [item for part in cache for item in part.items() if item[0] is not None]
        assert entries
        for key, value in entries:
            assert not gc.is_tracked(key), key
            assert not gc.is_tracked(value), value


def test_a_full_cache_part_is_emptied_alone(zones: ZoneSet, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bounds apply per part, so reaching one empties 1/PARTS of a cache:
    # emptying or growing a whole 200,000-entry dict stalled queries for ms.
    from pygdnsd.engine import answer_cache

    monkeypatch.setattr(answer_cache, "MAX_QUESTIONS", 2 * answer_cache.PARTS)
    engine = responder(zones)
    names = [f"n{i}.example.com" for i in range(8 * answer_cache.PARTS)]
    for name in names:
        engine.respond(query(name, TXT), V4, False)
    parts = engine._cache.by_question
    assert all(len(part) <= 2 for part in parts)
    assert sum(len(part) for part in parts) > answer_cache.PARTS  # most parts still hold entries
