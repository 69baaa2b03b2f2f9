"""Engine: ACME DNS-01 challenges merged with zone data, as gdnsd 3.8.1 merges them.

Every expectation below was measured against Debian's gdnsd 3.8.1 serving the
same zones with the same challenges (``gdnsdctl acme-dns-01 ...``, then dig):
which questions see the challenges, which keep their zone answer, and where
a challenge makes a name exist (NOERROR instead of NXDOMAIN).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_support import (
    CNAME,
    HINFO,
    MX,
    NS,
    RR,
    SOA,
    TXT,
    V4,
    A,
    Message,
    ask,
    parse,
    query,
    responder,
    wire_name,
    write_zones,
)
from pygdnsd.engine.challenges import EMPTY, ChallengeSet
from pygdnsd.engine.responder import Responder
from pygdnsd.zones.model import ZoneSet
from pygdnsd.zones.settings import ZoneSettings

ANY = 255
NOERROR, NXDOMAIN, REFUSED = 0, 3, 5
P = b"0123456789012345678901234567890123456789012"
Q = b"-123456789012345678901234567890123456789012"
R = b"_123456789012345678901234567890123456789012"

EXAMPLE_COM = """\
$TTL 86400
@ SOA ns1 dns-admin 1 7200 1800 259200 900
@ NS ns1
ns1 A 192.0.2.42
sub NS ns.sub
ns.sub A 192.0.2.50
*.wild A 192.0.2.60
*.wildtxt TXT "wildtxt"
_acme-challenge.cn CNAME _acme-challenge.target
target A 192.0.2.70
_acme-challenge.mx MX 10 ns1
deep.ent.x A 192.0.2.80
_acme-challenge.txtonly TXT "static"
_acme-challenge.other A 192.0.2.43
_acme-challenge.cn2 CNAME _acme-challenge.t2
_acme-challenge.t2 TXT "t2static"
_acme-challenge.cnout CNAME _acme-challenge.example.org.
_acme-challenge.tocut CNAME _acme-challenge.x.sub
"""
EXAMPLE_ORG = "@ SOA ns1.example.com. dns-admin.example.com. 1 7200 1800 259200 900\n@ NS ns1.example.com.\n"

CHALLENGED = [
    "snxd.example.com", "sub.example.com", "x.sub.example.com", "wild.example.com", "foo.wild.example.com",
    "foo.wildtxt.example.com", "cn.example.com", "target.example.com", "mx.example.com", "ent.x.example.com",
    "example.com", "notzone.test", "example.org", "txtonly.example.com", "other.example.com",
    "t2.example.com", "cnout.example.com", "tocut.example.com",
]


def challenges_for(*names: str, payload: bytes = P, dns_ttl: int = 0) -> ChallengeSet:
    return ChallengeSet.build([(wire_name(name).lower(), payload) for name in names], dns_ttl)


@pytest.fixture(scope="module", name="zones")
def zones_fixture(tmp_path_factory: pytest.TempPathFactory) -> ZoneSet:
    return write_zones(
        tmp_path_factory.mktemp("acme-zones"), {"example.com": EXAMPLE_COM, "example.org": EXAMPLE_ORG}, ZoneSettings()
    )


@pytest.fixture(name="engine")
def engine_fixture(zones: ZoneSet) -> Responder:
    engine = responder(zones)
    engine.set_challenges(challenges_for(*CHALLENGED))
    return engine


def records(section: list[RR]) -> list[tuple[bytes, int, int, bytes]]:
    return [(rr.owner.lower(), rr.rtype, rr.ttl, rr.rdata) for rr in section]


def txt(payload: bytes) -> bytes:
    return bytes((len(payload),)) + payload


def summary(msg: Message) -> tuple[int, bool, list[tuple[int, int]], list[int]]:
    """rcode, AA, the answer's (type, TTL) pairs, the authority's types."""
    return msg.rcode, msg.aa, [(rr.rtype, rr.ttl) for rr in msg.answer], [rr.rtype for rr in msg.authority]


CHAL = (TXT, 0)
NODATA = (NOERROR, True, [], [SOA])
REFERRAL = (NOERROR, False, [], [NS])


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        # No zone data at all: the challenge alone makes the name exist.
        ("_acme-challenge.snxd.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.snxd.example.com", A, NODATA),
        ("_acme-challenge.snxd.example.com", ANY, (NOERROR, True, [(HINFO, 3600)], [])),
        # At or below a delegation: the referral, nothing else.
        ("_acme-challenge.sub.example.com", TXT, REFERRAL),
        ("_acme-challenge.x.sub.example.com", TXT, REFERRAL),
        ("_acme-challenge.x.sub.example.com", ANY, REFERRAL),
        # Under a wildcard: its TXT (its own TTL) and the challenge; its other data as is.
        ("_acme-challenge.wild.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.wild.example.com", A, (NOERROR, True, [(A, 86400)], [])),
        ("_acme-challenge.foo.wild.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.foo.wildtxt.example.com", TXT, (NOERROR, True, [(TXT, 86400), CHAL], [])),
        ("_acme-challenge.foo.wildtxt.example.com", A, NODATA),
        # A CNAME is the whole answer, TXT or not, challenges at either end or not.
        ("_acme-challenge.cn.example.com", TXT, (NOERROR, True, [(CNAME, 86400)], [])),
        ("_acme-challenge.cn.example.com", A, (NOERROR, True, [(CNAME, 86400)], [])),
        ("_acme-challenge.cn.example.com", ANY, (NOERROR, True, [(CNAME, 86400)], [])),
        # Other data at the name: kept for its type, the challenge for TXT.
        ("_acme-challenge.mx.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.mx.example.com", MX, (NOERROR, True, [(MX, 86400)], [])),
        ("_acme-challenge.mx.example.com", A, NODATA),
        ("_acme-challenge.other.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.other.example.com", A, (NOERROR, True, [(A, 86400)], [])),
        ("_acme-challenge.other.example.com", ANY, (NOERROR, True, [(HINFO, 3600)], [])),
        # Static TXT at the name (its TTL forced to acme_challenge_dns_ttl by the loader), then the challenge.
        ("_acme-challenge.txtonly.example.com", TXT, (NOERROR, True, [(TXT, 0), CHAL], [])),
        ("_acme-challenge.ent.x.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.example.com", TXT, (NOERROR, True, [CHAL], [])),
        ("_acme-challenge.example.com", A, NODATA),
        ("_acme-challenge.example.org", TXT, (NOERROR, True, [CHAL], [])),
        # In no zone: refused, challenge or not (it starts working once such a zone loads).
        ("_acme-challenge.notzone.test", TXT, (REFUSED, False, [], [])),
        # NAME itself exists once it has a challenge (no data of its own).
        ("snxd.example.com", A, NODATA),
        ("snxd.example.com", TXT, NODATA),
        ("snxd.example.com", ANY, (NOERROR, True, [(HINFO, 3600)], [])),
        # Nothing else does.
        ("nothing.example.com", TXT, (NXDOMAIN, True, [], [SOA])),
        ("x._acme-challenge.snxd.example.com", TXT, (NXDOMAIN, True, [], [SOA])),
        ("_acme-challenge._acme-challenge.snxd.example.com", TXT, (NXDOMAIN, True, [], [SOA])),
        ("_acme-challenge.nothing.example.com", TXT, (NXDOMAIN, True, [], [SOA])),
    ],
)
def test_challenges_merge_with_zone_data_as_gdnsd_merges_them(
    engine: Responder, name: str, qtype: int, expected: tuple[int, bool, list[tuple[int, int]], list[int]]
) -> None:
    for tcp in (False, True):
        assert summary(ask(engine, name, qtype, tcp=tcp)) == expected


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        # The chain ends at a missing name with challenges: they answer, owned by that name.
        ("_acme-challenge.cn.example.com", TXT, (NOERROR, [("_acme-challenge.target.example.com", TXT)], [])),
        ("_acme-challenge.cn.example.com", A, (NOERROR, [], [SOA])),
        # ... at a name with TXT of its own: the CNAME, that TXT, the challenges.
        ("_acme-challenge.cn2.example.com", TXT, (NOERROR, [("_acme-challenge.t2.example.com", TXT)] * 2, [])),
        # ... out of the zone, or at a delegation: the challenges there do not count.
        ("_acme-challenge.cnout.example.com", TXT, (NOERROR, [], [])),
        ("_acme-challenge.tocut.example.com", TXT, (NOERROR, [], [NS])),
        # CNAME and ANY questions are not chased.
        ("_acme-challenge.cn.example.com", CNAME, (NOERROR, [], [])),
        ("_acme-challenge.cn.example.com", ANY, (NOERROR, [], [])),
    ],
)
def test_with_chasing_on_the_challenges_where_a_chain_ends_follow_it(
    zones: ZoneSet, name: str, qtype: int, expected: tuple[int, list[tuple[str, int]], list[int]]
) -> None:
    engine = responder(zones, experimental_no_chain=False)
    engine.set_challenges(challenges_for(*CHALLENGED))
    msg = ask(engine, name, qtype)
    assert msg.answer[0].rtype == CNAME and msg.answer[0].owner.lower() == wire_name(name)
    after_cname = [(rr.owner.lower(), rr.rtype) for rr in msg.answer[1:]]
    rcode, answer, authority = expected
    assert (msg.rcode, after_cname, [rr.rtype for rr in msg.authority]) == (
        rcode, [(wire_name(owner), rtype) for owner, rtype in answer], authority
    )


def test_a_challenge_is_a_txt_record_of_its_payload_with_the_configured_dns_ttl(zones: ZoneSet) -> None:
    engine = responder(zones)
    engine.set_challenges(challenges_for("snxd.example.com", dns_ttl=77))
    msg = ask(engine, "_acme-challenge.SNXD.example.com", TXT)
    assert records(msg.answer) == [(wire_name("_acme-challenge.snxd.example.com"), TXT, 77, txt(P))]
    # The owner points at the question (the challenge data is the rest of the answer).
    assert msg.answer[0].owner_raw == b"\xc0\x0c"


def test_every_payload_of_a_name_is_served_oldest_first_after_the_zones_txt(zones: ZoneSet) -> None:
    engine = responder(zones)
    pairs = [(wire_name(n), p) for n, p in [("txtonly.example.com", R), ("mx.example.com", P), ("txtonly.example.com", Q)]]
    engine.set_challenges(ChallengeSet.build(pairs, 0))
    msg = ask(engine, "_acme-challenge.txtonly.example.com", TXT)
    assert [rr.rdata for rr in msg.answer] == [txt(b"static"), txt(R), txt(Q)]
    assert msg.counts == (3, 0, 0)


def test_challenges_are_served_from_fresh_caches_after_every_change(zones: ZoneSet) -> None:
    engine = responder(zones)
    name = "_acme-challenge.snxd.example.com"

    def served() -> tuple[int, list[bytes]]:
        # Twice over UDP: the second is the whole-response cache's answer.
        first, second = (parse(engine.respond(query(name, TXT), V4, False)) for _ in range(2))
        assert first.raw == second.raw
        return first.rcode, [rr.rdata for rr in first.answer]

    assert served() == (NXDOMAIN, [])
    engine.set_challenges(challenges_for("snxd.example.com"))
    assert served() == (NOERROR, [txt(P)])
    engine.set_challenges(challenges_for("snxd.example.com", "snxd.example.com", payload=Q))
    assert served() == (NOERROR, [txt(Q), txt(Q)])
    engine.set_challenges(EMPTY)  # flushed, or expired
    assert served() == (NXDOMAIN, [])


def test_a_zone_reload_keeps_the_challenges_and_a_new_zone_starts_serving_them(zones: ZoneSet, tmp_path: Path) -> None:
    engine = responder(zones)
    engine.set_challenges(challenges_for("www.example.net", "snxd.example.com"))
    assert ask(engine, "_acme-challenge.www.example.net", TXT).rcode == REFUSED
    more = write_zones(tmp_path, {"example.com": EXAMPLE_COM, "example.net": EXAMPLE_ORG.replace("example.org", "example.net")})
    engine.set_zones(more)
    assert engine.challenges == challenges_for("www.example.net", "snxd.example.com")
    for name in ("_acme-challenge.www.example.net", "_acme-challenge.snxd.example.com"):
        assert [rr.rdata for rr in ask(engine, name, TXT).answer] == [txt(P)]


def test_a_challenge_set_counts_and_matches_names() -> None:
    live = challenges_for("a.example.com", "a.example.com", "b.example.com")
    assert len(live) == 3 and live and not EMPTY
    match = live.matching(wire_name("_acme-challenge.a.example.com"))
    assert match is not None and match.prefixed and len(match.rrset.rdatas) == 2
    match = live.matching(wire_name("b.example.com"))
    assert match is not None and not match.prefixed
    assert live.matching(wire_name("_acme-challenge.c.example.com")) is None
    assert live.matching(wire_name("_acme-challenge")) is None
