"""Engine: what each kind of question gets, section by section, and how it is compressed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from engine_support import (
    AAAA,
    ANY,
    CNAME,
    DEFAULT_ZONES,
    HINFO,
    MX,
    NAPTR,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    V4,
    A,
    Message,
    ask,
    engine_fixture,
    opt_rr,
    query,
    responder,
    wire_name,
    write_zones,
    zones_fixture,
)
from pygdnsd.engine.responder import Responder
from pygdnsd.zones.model import ZoneSet
from pygdnsd.zones.settings import ZoneSettings

DS = 43


zones = zones_fixture()
engine = engine_fixture()


def ipv4(rdata: bytes) -> str:
    return ".".join(str(b) for b in rdata)


def assert_negative(msg: Message, rcode: int, soa_ttl: int, apex: str) -> None:
    assert msg.rcode == rcode
    assert msg.aa
    assert msg.answer == []
    assert msg.additional == []
    assert [(rr.rtype, rr.ttl, rr.owner.lower()) for rr in msg.authority] == [(SOA, soa_ttl, wire_name(apex))]


# -- positive answers ------------------------------------------------------


def test_positive_answer_is_minimal_with_owners_pointing_at_the_question(engine: Responder) -> None:
    msg = ask(engine, "www.example.com")
    assert msg.rcode == 0
    assert msg.aa
    assert msg.counts == (3, 0, 0)
    assert [rr.owner_raw for rr in msg.answer] == [b"\xc0\x0c"] * 3
    assert [rr.ttl for rr in msg.answer] == [300] * 3
    assert sorted(ipv4(rr.rdata) for rr in msg.answer) == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert engine.stats.dns["noerror"] == 1


def test_question_case_is_echoed_and_owners_keep_it(engine: Responder) -> None:
    msg = ask(engine, "WwW.ExAmPlE.cOm", AAAA)
    assert msg.question == wire_name("WwW.ExAmPlE.cOm") + struct.pack("!HH", AAAA, 1)
    assert msg.answer[0].owner == wire_name("WwW.ExAmPlE.cOm")
    assert msg.answer[0].rdata == bytes.fromhex("20010db8000000000000000000000010")


def test_apex_ns_and_mx_have_no_additional_data(engine: Responder) -> None:
    ns = ask(engine, "example.com", NS)
    assert ns.counts == (2, 0, 0)
    # NS rdata compressed: "ns1" + pointer to the question name.
    assert ns.answer[0].rdata == b"\x03ns1\xc0\x0c"
    assert ns.name_at(ns.answer[1].rdata_at) == wire_name("ns2.example.net")
    mx = ask(engine, "example.com", MX)
    assert mx.counts == (1, 0, 0)
    assert mx.answer[0].rdata == b"\x00\x0a\x04mail\xc0\x0c"


def test_cname_rdata_is_compressed_against_the_question(engine: Responder) -> None:
    msg = ask(engine, "ftp.example.com", CNAME)
    assert msg.answer[0].rdata == b"\x03www\xc0\x10"


@pytest.mark.parametrize(
    ("name", "qtype", "target"),
    [
        ("ptr.example.com", PTR, "www.example.com"),
        ("_sip._tcp.example.com", SRV, "sip.example.com"),
    ],
)
def test_ptr_and_srv_targets_are_not_compressed(engine: Responder, name: str, qtype: int, target: str) -> None:
    msg = ask(engine, name, qtype)
    assert msg.answer[0].rdata.endswith(wire_name(target))


def test_naptr_replacement_is_not_compressed(engine: Responder) -> None:
    msg = ask(engine, "naptr.example.com", NAPTR)
    assert msg.answer[0].rdata.endswith(wire_name("_sip._udp.example.com"))


def test_cname_answers_every_qtype_when_chaining_is_off(engine: Responder) -> None:
    for qtype in (A, AAAA, MX, TXT, CNAME, ANY):
        msg = ask(engine, "ftp.example.com", qtype)
        assert msg.rcode == 0
        assert msg.aa
        assert [(rr.rtype, rr.owner_raw) for rr in msg.answer] == [(CNAME, b"\xc0\x0c")]
        assert msg.authority == []
    dangling = ask(engine, "dangling.example.com")
    assert [rr.rtype for rr in dangling.answer] == [CNAME]
    assert dangling.rcode == 0


# -- negative answers ------------------------------------------------------


def test_nodata_and_nxdomain_carry_the_soa_with_its_negative_ttl(engine: Responder) -> None:
    # SOA TTL 3600, minimum 900: served as 900, in positive SOA answers too.
    assert_negative(ask(engine, "www.example.com", TXT), 0, 900, "example.com")
    assert_negative(ask(engine, "nope.example.com"), 3, 900, "example.com")
    assert_negative(ask(engine, "nope.example.com", ANY), 3, 900, "example.com")
    assert_negative(ask(engine, "nope.example.net"), 3, 60, "example.net")
    soa = ask(engine, "example.com", SOA)
    assert [rr.ttl for rr in soa.answer] == [900]
    assert engine.stats.dns["nxdomain"] == 3


def test_negative_soa_rdata_is_compressed_against_the_question(engine: Responder) -> None:
    msg = ask(engine, "nope.example.com")
    soa = msg.authority[0]
    assert soa.owner_raw == b"\xc0\x11"
    assert soa.rdata[:6] == b"\x03ns1\xc0\x11"
    assert msg.name_at(soa.rdata_at + 6) == wire_name("hostmaster.example.com")
    assert soa.rdata[-4:] == struct.pack("!I", 900)


def test_negative_soa_ttl_follows_max_ncache_ttl(tmp_path: Path) -> None:
    zones = write_zones(tmp_path, DEFAULT_ZONES, ZoneSettings(max_ncache_ttl=600))
    msg = ask(responder(zones), "nope.example.com")
    assert msg.authority[0].ttl == 600
    assert msg.authority[0].rdata[-4:] == struct.pack("!I", 600)


@pytest.mark.parametrize("name", ["ent.example.com", "b.ent.example.com"])
def test_empty_non_terminals_are_nodata(engine: Responder, name: str) -> None:
    assert_negative(ask(engine, name, A), 0, 900, "example.com")


@pytest.mark.parametrize("name", ["ent.example.com", "b.ent.example.com"])
def test_any_at_an_empty_non_terminal_gets_hinfo(engine: Responder, name: str) -> None:
    # Observed on gdnsd 3.8.1 (docs/gdnsd-behaviour.md says NODATA; the daemon disagrees).
    msg = ask(engine, name, ANY)
    assert msg.aa
    assert [(rr.rtype, rr.rdata) for rr in msg.answer] == [(HINFO, b"\x07RFC8482\x00")]
    assert msg.authority == []


def test_nxdomain_below_an_existing_name_without_wildcard(engine: Responder) -> None:
    assert_negative(ask(engine, "x.www.example.com"), 3, 900, "example.com")


# -- wildcards -------------------------------------------------------------


@pytest.mark.parametrize("name", ["zz.wild.example.com", "a.b.wild.example.com", "ZZ.Wild.Example.Com"])
def test_wildcard_synthesises_the_query_name(engine: Responder, name: str) -> None:
    msg = ask(engine, name)
    assert msg.aa
    assert [(rr.owner_raw, ipv4(rr.rdata)) for rr in msg.answer] == [(b"\xc0\x0c", "192.0.2.100")]
    mx = ask(engine, name, MX)
    assert mx.counts == (1, 0, 0)
    assert mx.name_at(mx.answer[0].rdata_at + 2).lower() == wire_name("mail.example.com")
    assert_negative(ask(engine, name, TXT), 0, 900, "example.com")


def test_wildcard_cname(engine: Responder) -> None:
    msg = ask(engine, "foo.wc.example.com")
    assert [(rr.rtype, rr.owner_raw) for rr in msg.answer] == [(CNAME, b"\xc0\x0c")]
    assert msg.name_at(msg.answer[0].rdata_at) == wire_name("www.example.com")


def test_wildcard_does_not_cover_its_own_parent(engine: Responder) -> None:
    assert_negative(ask(engine, "wild.example.com"), 0, 900, "example.com")


# -- ANY (RFC 8482) --------------------------------------------------------


@pytest.mark.parametrize("name", ["www.example.com", "example.com", "zz.wild.example.com"])
def test_any_gets_one_synthetic_hinfo(engine: Responder, name: str) -> None:
    msg = ask(engine, name, ANY)
    assert msg.aa
    assert msg.counts == (1, 0, 0)
    rr = msg.answer[0]
    assert (rr.owner_raw, rr.rtype, rr.rclass, rr.ttl, rr.rdata) == (
        b"\xc0\x0c", HINFO, 1, 3600, b"\x07RFC8482\x00",
    )


def test_any_below_a_delegation_is_a_referral(engine: Responder) -> None:
    msg = ask(engine, "deleg.example.com", ANY)
    assert not msg.aa
    assert [rr.rtype for rr in msg.authority] == [NS, NS, NS]


# -- classes ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "qtype"), [("Version.Bind", TXT), ("www.example.com", A), ("x", 99)])
def test_chaos_class_answers_anything_with_chaos_response(engine: Responder, name: str, qtype: int) -> None:
    msg = ask(engine, name, qtype, 3)
    assert msg.rcode == 0
    assert not msg.aa
    assert msg.counts == (1, 0, 0)
    rr = msg.answer[0]
    assert (rr.owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata) == (wire_name(name), TXT, 3, 0, b"\x07gdnsd/3")


def test_chaos_response_setting(zones: ZoneSet) -> None:
    msg = ask(responder(zones, chaos_response=b"hi there"), "id.server", TXT, 3)
    assert msg.answer[0].rdata == b"\x08hi there"


def test_class_any_is_answered_as_in(engine: Responder) -> None:
    msg = ask(engine, "mail.example.com", A, 255)
    assert msg.question.endswith(struct.pack("!HH", A, 255))
    assert [(rr.rclass, ipv4(rr.rdata)) for rr in msg.answer] == [(1, "192.0.2.25")]
    assert msg.aa


# -- delegations -----------------------------------------------------------

# gdnsd 3.8.1's exact responses to these queries (no EDNS, ID 0x1234, RD),
# captured from the real daemon serving the same delegation (tests/data/diff/main).
GDNSD_REFERRALS = {
    "deleg.example.com": "1234810000010000000300030564656c6567076578616d706c6503636f6d0000010001c00c0002000100000e100006036e7331c00cc00c0002000100000e100006036e7332c00cc00c0002000100000e100010026e73076578616d706c65036e657400c02f0001000100000e100004c0000282c02f001c000100000e10001020010db8000000000000000000000130c0410001000100000e100004c0000283",
    "foo.deleg.example.com": "12348100000100000003000303666f6f0564656c6567076578616d706c6503636f6d0000010001c0100002000100000e100006036e7331c010c0100002000100000e100006036e7332c010c0100002000100000e100010026e73076578616d706c65036e657400c0330001000100000e100004c0000282c033001c000100000e10001020010db8000000000000000000000130c0450001000100000e100004c0000283",
    "ns1.deleg.example.com": "123481000001000000030003036e73310564656c6567076578616d706c6503636f6d0000010001c0100002000100000e100002c00cc0100002000100000e100006036e7332c010c0100002000100000e100010026e73076578616d706c65036e657400c00c0001000100000e100004c0000282c00c001c000100000e10001020010db8000000000000000000000130c0410001000100000e100004c0000283",
    "ns2.deleg.example.com": "123481000001000000030003036e73320564656c6567076578616d706c6503636f6d0000010001c0100002000100000e100006036e7331c010c0100002000100000e100002c00cc0100002000100000e100010026e73076578616d706c65036e657400c0330001000100000e100004c0000282c033001c000100000e10001020010db8000000000000000000000130c00c0001000100000e100004c0000283",
    # Out-of-zone glue kept in the zone file is served for its NS target.
    "deleg3.example.com": "1234810000010000000200030664656c656733076578616d706c6503636f6d0000010001c00c0002000100000e100011026e73076f757473696465047465737400c00c0002000100000e100006036e7331c00cc0300001000100000e100004c6336435c030001c000100000e10001020010db8ffff00000000000000000053c04d0001000100000e100004c000028c",
    "x.deleg3.example.com": "12348100000100000002000301780664656c656733076578616d706c6503636f6d0000010001c00e0002000100000e100011026e73076f757473696465047465737400c00e0002000100000e100006036e7331c00ec0320001000100000e100004c6336435c032001c000100000e10001020010db8ffff00000000000000000053c04f0001000100000e100004c000028c",
}


@pytest.mark.parametrize("name", sorted(GDNSD_REFERRALS))
def test_referral_bytes_match_gdnsd(engine: Responder, name: str) -> None:
    assert engine.respond(query(name), V4, False) == bytes.fromhex(GDNSD_REFERRALS[name])


@pytest.mark.parametrize("qtype", [A, NS, DS, MX, ANY])
def test_referral_shape(engine: Responder, qtype: int) -> None:
    msg = ask(engine, "deleg.example.com", qtype)
    assert msg.rcode == 0
    assert not msg.aa
    assert msg.answer == []
    assert [rr.owner for rr in msg.authority] == [wire_name("deleg.example.com")] * 3
    # Glue: only for NS targets inside the cut, A then AAAA, in NS order.
    assert [(rr.owner, rr.rtype) for rr in msg.additional] == [
        (wire_name("ns1.deleg.example.com"), A),
        (wire_name("ns1.deleg.example.com"), AAAA),
        (wire_name("ns2.deleg.example.com"), A),
    ]


def test_delegation_to_parent_zone_names_has_no_glue(engine: Responder) -> None:
    msg = ask(engine, "www.deleg2.example.com")
    assert not msg.aa
    assert [rr.owner for rr in msg.authority] == [wire_name("deleg2.example.com")]
    assert msg.additional == []


# The root zone as gdnsd's suite serves it (006root): the root's NS and net's
# NS lie under other delegations of the zone (com, org), as the real root's
# servers lie under net.
ROOT_ZONE = """\
@ SOA ns1 dns-admin 1 7200 1800 259200 900
@ NS ns1.root-servers.com.
@ NS ns2.root-servers.com.
@ NS ns3.
@ NS .
ns1.root-servers.com. A 192.0.2.1
ns2.root-servers.com. A 192.0.2.2
ns2.root-servers.com. AAAA 2001:db8::2
ns3. A 192.0.2.9
@ A 192.0.2.3
com NS ns1.com
com NS ns2.com
ns1.com A 192.0.2.5
ns2.com A 192.0.2.6
net NS ns1.root-servers.com.
net NS ns9.org.
net NS ns3.
org NS ns9.org
ns9.org A 192.0.2.78
"""


@pytest.fixture(scope="module")
def root_engine(tmp_path_factory: pytest.TempPathFactory) -> Responder:
    return responder(write_zones(tmp_path_factory.mktemp("root"), {"ROOT_ZONE": ROOT_ZONE}))


def test_referral_glue_from_under_other_delegations(root_engine: Responder) -> None:
    # gdnsd 3.8.1: targets under another cut (com, org) get their addresses; an
    # authoritative target (ns3.) does not.
    msg = ask(root_engine, "www.example.net")
    assert not msg.aa
    assert [rr.owner for rr in msg.authority] == [wire_name("net")] * 3
    assert [(rr.owner, rr.rtype) for rr in msg.additional] == [
        (wire_name("ns1.root-servers.com"), A),
        (wire_name("ns9.org"), A),
    ]


def test_apex_ns_answer_carries_the_glue_of_its_targets(root_engine: Responder) -> None:
    # 006root/021root.t: the root's NS under com get their addresses, ns3. and . do not.
    msg = ask(root_engine, ".", NS)
    assert msg.aa
    assert len(msg.answer) == 4
    assert [(rr.owner, rr.rtype) for rr in msg.additional] == [
        (wire_name("ns1.root-servers.com"), A),
        (wire_name("ns2.root-servers.com"), A),
        (wire_name("ns2.root-servers.com"), AAAA),
    ]
    # The delegation's own glue is unchanged.
    com = ask(root_engine, "www.example.com")
    assert [rr.owner for rr in com.additional] == [wire_name("ns1.com"), wire_name("ns2.com")]


def test_apex_ns_answer_carries_out_of_zone_glue(tmp_path: Path) -> None:
    # The zone holds ns.outside.test's addresses as deleg3's glue; ns1 (in the zone) gets none.
    zone = DEFAULT_ZONES["example.com"] + "@ NS ns.outside.test.\n"
    engine = responder(write_zones(tmp_path, {**DEFAULT_ZONES, "example.com": zone}))
    msg = ask(engine, "example.com", NS)
    outside = wire_name("ns.outside.test")
    assert [(rr.owner, rr.rtype) for rr in msg.additional] == [(outside, A), (outside, AAAA)]
    assert ask(responder(write_zones(tmp_path / "plain", DEFAULT_ZONES)), "example.com", NS).additional == []


def test_a_cname_chain_to_the_apex_ns_carries_its_glue(tmp_path: Path) -> None:
    zone = DEFAULT_ZONES["example.com"] + "@ NS ns9.deleg\nns9.deleg A 192.0.2.139\ntoapex CNAME @\n"
    engine = responder(write_zones(tmp_path, {**DEFAULT_ZONES, "example.com": zone}), experimental_no_chain=False)
    msg = ask(engine, "toapex.example.com", NS)
    assert [rr.rtype for rr in msg.answer] == [CNAME] + [NS] * 3
    assert [(rr.owner, rr.rtype) for rr in msg.additional] == [(wire_name("ns9.deleg.example.com"), A)]


# gdnsd's compression torture (003complex/008compress.t): 20 MX targets sharing
# suffixes in many ways. gdnsd remembers 16 names to compress against (the
# question's 5 suffixes included), so later names compress less than they could.
TORTURE_TARGETS = (
    "foo.foo.foo.fox", "fox", "bar.foo.foo.foo", "fox.foo", "foo.fooo.foo.fo", "foo.fox",
    "fox.foo.foo.foo", "foo.foo.foo", "foo.fox.foo.foo", "foo.foo.foo.foo", "foo.foo.foo.bar",
    "foo.foo", "fo.foo.foo.fooo", "foo", "asdf.xyz.foo.foo.fox.foo.example.org.", "foo.foo.bar.foo",
    "fooo.foo.foo.fo", "foo.fox.foo", "foo.foo.fooo.fo", "foo.foo.fox.foo",
)
# Debian's gdnsd 3.8.1, asked the same question (EDNS, 1024 bytes).
GDNSD_TORTURE = (
    "12348400000100140000000103666f6f13636f6d7072657373696f6e2d746f727475726503666f6f074578616d706c6503636f6d00"
    "000f0001c00c000f0001000151800014000003666f6f03666f6f03666f6f03666f78c028c00c000f00010001518000040001c053c0"
    "0c000f000100015180001000020362617203666f6f03666f6fc024c00c000f0001000151800008000303666f78c024c00c000f0001"
    "000151800014000403666f6f04666f6f6f03666f6f02666fc028c00c000f00010001518000040005c04fc00c000f00010001518000"
    "08000603666f78c07bc00c000f00010001518000040007c07bc00c000f000100015180000c000803666f6f03666f78c07fc00c000f"
    "0001000151800008000903666f6fc07bc00c000f0001000151800014000a03666f6f03666f6f03666f6f03626172c028c00c000f00"
    "01000151800004000bc07fc00c000f0001000151800014000c02666f03666f6f03666f6f04666f6f6fc028c00c000f000100015180"
    "0004000dc024c00c000f0001000151800028000e04617364660378797a03666f6f03666f6f03666f7803666f6f076578616d706c65"
    "036f726700c00c000f0001000151800010000f03666f6f03666f6f03626172c024c00c000f000100015180000d001004666f6f6f03"
    "666f6fc0b0c00c000f0001000151800008001103666f6fc093c00c000f0001000151800014001203666f6f03666f6f04666f6f6f02"
    "666fc028c00c000f000100015180000c001303666f6f03666f6fc0930000290400000000000000"
)


def test_compression_remembers_sixteen_names_as_gdnsd(tmp_path: Path) -> None:
    mx = "".join(f"foo.compression-torture.foo MX {n} {target}\n" for n, target in enumerate(TORTURE_TARGETS))
    zone = "@ SOA ns1 dns-admin.example.net. 1 7200 1800 259200 900\n@ NS ns1\n@ NS ns2\n"
    engine = responder(write_zones(tmp_path, {"example.com": zone + "ns1 A 192.0.2.1\nns2 A 192.0.2.2\n" + mx}))
    asked = query("foo.compression-torture.foo.Example.com", MX, rd=False, edns=opt_rr(size=1024))
    assert engine.respond(asked, V4, False) == bytes.fromhex(GDNSD_TORTURE)
