"""Engine: CNAME chains with ``experimental_no_chain => false``."""

from __future__ import annotations

from pathlib import Path

from engine_support import (
    CNAME,
    MX,
    NS,
    SOA,
    V4,
    A,
    Message,
    ask,
    engine_fixture,
    query,
    responder,
    wire_name,
    write_zones,
    zones_fixture,
)
from pygdnsd.engine import lookup
from pygdnsd.engine.responder import Responder
from pygdnsd.zones import model
from pygdnsd.zones.model import RRset, Zone, ZoneSet

zones = zones_fixture()
engine = engine_fixture(experimental_no_chain=False)


def chain_of(msg: Message) -> list[tuple[bytes, int]]:
    return [(rr.owner, rr.rtype) for rr in msg.answer]


def test_chain_is_followed_to_the_data(engine: Responder) -> None:
    msg = ask(engine, "chain1.example.com")
    assert msg.rcode == 0
    assert msg.aa
    assert chain_of(msg) == [
        (wire_name("chain1.example.com"), CNAME),
        (wire_name("chain2.example.com"), CNAME),
        *[(wire_name("www.example.com"), A)] * 3,
    ]
    assert msg.answer[0].owner_raw == b"\xc0\x0c"
    # Each later owner points at the previous CNAME's rdata.
    assert msg.answer[1].owner_raw == bytes((0xC0, msg.answer[0].rdata_at))
    assert msg.authority == []


def test_chain_bytes_match_gdnsd_up_to_rotation(engine: Responder) -> None:
    # gdnsd 3.8.1 (experimental_no_chain => false) on the same zone; only the
    # order of www's three A records may differ.
    gdnsd = bytes.fromhex(
        "12348500000100050000000006636861696e31076578616d706c6503636f6d0000010001"
        "c00c0005000100000e10000906636861696e32c013c0300005000100000e10000603777777c013"
        "c045000100010000012c0004c000020ac045000100010000012c0004c000020cc045000100010000012c0004c000020b"
    )
    raw = engine.respond(query("chain1.example.com"), V4, False)
    assert raw is not None
    records = 3
    cut = len(gdnsd) - records * 16
    assert raw[:cut] == gdnsd[:cut]
    assert sorted(raw[cut + 16 * i : cut + 16 * (i + 1)] for i in range(records)) == sorted(
        gdnsd[cut + 16 * i : cut + 16 * (i + 1)] for i in range(records)
    )


def test_chain_end_without_the_type_is_nodata(engine: Responder) -> None:
    msg = ask(engine, "ftp.example.com", MX)
    assert msg.rcode == 0
    assert chain_of(msg) == [(wire_name("ftp.example.com"), CNAME)]
    assert [rr.rtype for rr in msg.authority] == [SOA]
    assert msg.authority[0].ttl == 900


def test_chain_to_a_missing_name_is_nxdomain(engine: Responder) -> None:
    msg = ask(engine, "dangling.example.com")
    assert msg.rcode == 3
    assert msg.aa
    assert chain_of(msg) == [(wire_name("dangling.example.com"), CNAME)]
    assert [rr.rtype for rr in msg.authority] == [SOA]


def test_chain_stops_where_it_leaves_the_zone(engine: Responder) -> None:
    # www.example.net is served here too, but gdnsd does not chase into it.
    msg = ask(engine, "ext.example.com")
    assert msg.rcode == 0
    assert chain_of(msg) == [(wire_name("ext.example.com"), CNAME)]
    assert msg.authority == []


def test_wildcard_cname_is_chased(engine: Responder) -> None:
    msg = ask(engine, "foo.wc.example.com")
    assert chain_of(msg) == [(wire_name("foo.wc.example.com"), CNAME), *[(wire_name("www.example.com"), A)] * 3]


def test_chain_into_a_delegation_ends_in_a_referral(engine: Responder) -> None:
    msg = ask(engine, "tocut.example.com")
    assert msg.rcode == 0
    assert msg.aa  # gdnsd keeps AA: the CNAME is ours
    assert chain_of(msg) == [(wire_name("tocut.example.com"), CNAME)]
    assert [(rr.owner, rr.rtype) for rr in msg.authority] == [(wire_name("deleg.example.com"), NS)] * 3
    assert [rr.owner for rr in msg.additional] == [
        wire_name("ns1.deleg.example.com"),
        wire_name("ns1.deleg.example.com"),
        wire_name("ns2.deleg.example.com"),
    ]


def test_cname_queries_and_any_are_not_chased(engine: Responder) -> None:
    assert chain_of(ask(engine, "chain1.example.com", CNAME)) == [(wire_name("chain1.example.com"), CNAME)]
    assert chain_of(ask(engine, "chain1.example.com", 255)) == [(wire_name("chain1.example.com"), CNAME)]


def test_chain_of_the_loader_maximum_depth_is_followed(tmp_path: Path) -> None:
    hops = "".join(f"c{i} CNAME c{i + 1}\n" for i in range(1, lookup.MAX_CHAIN))
    text = "$TTL 600\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n" + hops + f"c{lookup.MAX_CHAIN} CNAME ns\n"
    engine = responder(write_zones(tmp_path, {"example.org": text}), experimental_no_chain=False)
    msg = ask(engine, "c1.example.org")
    assert [rr.rtype for rr in msg.answer] == [CNAME] * lookup.MAX_CHAIN + [A]


def _hand_zone(cnames: dict[str, str]) -> ZoneSet:
    """A zone built without the loader, which refuses loops and over-long chains."""
    apex = wire_name("example.org")
    soa = RRset(model.SOA, 60, (wire_name("ns.example.org") + wire_name("hm.example.org") + bytes(20),))
    nodes: dict[bytes, dict[int, RRset]] = {apex: {model.SOA: soa}}
    for owner, target in cnames.items():
        nodes[wire_name(owner)] = {model.CNAME: RRset(model.CNAME, 60, (wire_name(target),))}
    zone = Zone(apex, 1, soa, nodes, frozenset())
    return ZoneSet({apex: zone})


def test_loops_end() -> None:
    engine = responder(
        _hand_zone({"loop1.example.org": "loop2.example.org", "loop2.example.org": "loop1.example.org"}),
        experimental_no_chain=False,
    )
    msg = ask(engine, "loop1.example.org")
    assert msg.rcode == 0
    assert 2 <= len(msg.answer) <= lookup.MAX_CHAIN + 1
    assert {rr.rtype for rr in msg.answer} == {CNAME}


def test_over_long_chains_stop_at_max_chain() -> None:
    length = lookup.MAX_CHAIN + 5
    hops = {f"c{i}.example.org": f"c{i + 1}.example.org" for i in range(length)}
    engine = responder(_hand_zone(hops), experimental_no_chain=False)
    msg = ask(engine, "c0.example.org")
    assert msg.rcode == 0
    assert [rr.rtype for rr in msg.answer] == [CNAME] * (lookup.MAX_CHAIN + 1)
