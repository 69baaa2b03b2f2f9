"""Engine: EDNS (our OPT, options, cookies) and the size limits that truncate UDP answers."""

from __future__ import annotations

import struct

import pytest

from engine_support import (
    TXT,
    V4,
    V6,
    A,
    Message,
    engine_fixture,
    opt_rr,
    option,
    parse,
    query,
    responder,
    wire_name,
    zones_fixture,
)
from engine_support import ask as ask_plain
from pygdnsd.engine.responder import Responder
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.zones.model import ZoneSet

NSID, ECS, COOKIE, KEEPALIVE, PADDING = 3, 8, 10, 11, 12
CLIENT_COOKIE = b"ABCDEFGH"
SECRET = bytes(range(32))

# big.example.com A: 40 records; 684 bytes with a plain OPT, 673 without.
BIG_EDNS = 684
BIG_PLAIN = 673
# A tcp_pad listener's connection with the default tcp_timeout (37 s).
PADDED = TcpShape.of(37, pad=True)


zones = zones_fixture()
engine = engine_fixture()


def ask(
    engine: Responder,
    name: str = "www.example.com",
    qtype: int = A,
    *,
    tcp: bool = False,
    client: bytes = V4,
    shape: TcpShape | None = None,
    **opt: object,
) -> Message:
    edns = opt_rr(**opt)  # type: ignore[arg-type]
    return parse(engine.respond(query(name, qtype, edns=edns), client, tcp, shape))


def cookie_from(msg: Message) -> bytes:
    return dict(msg.options)[COOKIE]


# -- our OPT record --------------------------------------------------------


@pytest.mark.parametrize("do", [False, True])
def test_our_opt_record(engine: Responder, do: bool) -> None:
    msg = ask(engine, size=4096, do=do, options=option(65001, b"x") + option(PADDING, b"\x00\x00"))
    assert msg.counts == (3, 0, 1)
    opt = msg.opt
    assert opt is not None
    assert opt.owner == b"\x00"
    assert opt.rclass == 1024
    assert opt.ttl == (0x8000 if do else 0)
    # Unknown options and client padding are not echoed.
    assert msg.options == []
    assert engine.stats.dns["edns"] == 1
    assert engine.stats.dns["edns_do"] == (1 if do else 0)


def test_no_opt_in_answers_to_queries_without_one(engine: Responder) -> None:
    msg = ask_plain(engine)
    assert msg.opt is None
    assert engine.stats.dns["edns"] == 0


# -- truncation ------------------------------------------------------------


def test_no_edns_limit_is_512(engine: Responder) -> None:
    msg = ask_plain(engine, "big.example.com")
    assert msg.tc
    assert msg.aa
    assert msg.rcode == 0
    assert msg.counts == (0, 0, 0)
    assert msg.question == wire_name("big.example.com") + struct.pack("!HH", A, 1)
    assert len(msg.raw) == 33
    assert engine.stats.udp["tc"] == 1
    assert engine.stats.udp["edns_tc"] == 0


def test_tcp_is_not_truncated(engine: Responder) -> None:
    plain = ask_plain(engine, "big.example.com", tcp=True)
    assert not plain.tc
    assert len(plain.raw) == BIG_PLAIN
    assert len(plain.answer) == 40
    edns = ask(engine, "big.example.com", tcp=True, size=512)
    assert not edns.tc
    assert len(edns.answer) == 40
    assert engine.stats.udp["tc"] == 0


@pytest.mark.parametrize(
    ("size", "whole"),
    [(0, False), (511, False), (512, False), (BIG_EDNS - 1, False), (BIG_EDNS, True), (1232, True), (4096, True)],
)
def test_edns_size_limit_boundary(engine: Responder, size: int, whole: bool) -> None:
    msg = ask(engine, "big.example.com", size=size, do=True)
    if whole:
        assert not msg.tc
        assert len(msg.raw) == BIG_EDNS
        assert len(msg.answer) == 40
    else:
        assert msg.tc
        assert msg.aa
        assert msg.counts == (0, 0, 1)
        assert msg.opt is not None
        assert msg.opt.ttl == 0x8000
        # gdnsd counts a truncated EDNS answer in edns_tc only (its suite, 005big.t).
        assert engine.stats.udp["tc"] == 0
        assert engine.stats.udp["edns_tc"] == 1


def test_an_edns_truncation_counts_in_edns_tc_only(zones: ZoneSet) -> None:
    # gdnsd's udp_tc counts truncations without EDNS only (005big.t), also for
    # an answer served again from memory (an unrotated TXT, truncated by the limit).
    engine = responder(zones, max_nocookie_response=200)
    for _ in range(3):
        assert ask(engine, "mid.example.com", TXT, size=4096).tc
    assert ask(engine, "mid.example.com", TXT, size=4096, options=option(NSID, b"")).tc
    assert (engine.stats.udp["tc"], engine.stats.udp["edns_tc"]) == (0, 4)
    assert ask_plain(engine, "mid.example.com", TXT).tc
    assert (engine.stats.udp["tc"], engine.stats.udp["edns_tc"]) == (1, 4)


def test_edns_big_counts_answers_over_512(engine: Responder) -> None:
    ask(engine, "big.example.com", size=4096)
    ask(engine, "www.example.com", size=4096)
    assert engine.stats.udp["edns_big"] == 1


def test_small_edns_sizes_are_treated_as_512(engine: Responder) -> None:
    msg = ask(engine, "mid.example.com", TXT, size=100)
    assert not msg.tc
    assert len(msg.raw) > 100


def test_max_edns_response_caps_the_client_size_per_family(zones: ZoneSet) -> None:
    v4_small = responder(zones, max_edns_response=600, max_edns_response_v6=4096)
    assert ask(v4_small, "big.example.com", size=4096).tc
    assert not ask(v4_small, "big.example.com", size=4096, client=V6).tc
    v6_small = responder(zones, max_edns_response=4096, max_edns_response_v6=600)
    assert not ask(v6_small, "big.example.com", size=4096).tc
    assert ask(v6_small, "big.example.com", size=4096, client=V6).tc
    assert v6_small.stats.dns["v6"] == 1


def test_truncated_answer_keeps_options(zones: ZoneSet) -> None:
    engine = responder(zones, nsid=b"me")
    opts = option(COOKIE, CLIENT_COOKIE) + option(NSID, b"")
    msg = ask(engine, "big.example.com", size=512, options=opts)
    assert msg.tc
    assert [code for code, _ in msg.options] == [COOKIE, NSID]


# -- TCP keepalive and padding ---------------------------------------------


def test_tcp_keepalive_only_over_tcp(zones: ZoneSet) -> None:
    engine = responder(zones, tcp_keepalive=150)
    assert ask(engine, tcp=True).options == [(KEEPALIVE, b"\x00\x96")]
    assert ask(engine, tcp=True, shape=TcpShape.of(15, False, closing=True)).options == [(KEEPALIVE, b"\x00\x00")]
    # A listener's own tcp_timeout (seconds) is what its connections are told.
    assert ask(engine, tcp=True, shape=TcpShape.of(15, False)).options == [(KEEPALIVE, b"\x00\x96")]
    assert ask(engine, tcp=False, options=option(KEEPALIVE, b"")).options == []
    assert ask_plain(engine, tcp=True).opt is None


def test_default_keepalive_is_37_seconds(engine: Responder) -> None:
    assert ask(engine, tcp=True, options=option(KEEPALIVE, b"")).options == [(KEEPALIVE, b"\x01\x72")]


@pytest.mark.parametrize(
    ("name", "qtype"), [("www.example.com", A), ("big.example.com", A), ("nope.example.com", A), ("www.example.com", 255)]
)
def test_tcp_pad_pads_to_multiples_of_468(zones: ZoneSet, name: str, qtype: int) -> None:
    engine = responder(zones)
    msg = ask(engine, name, qtype, tcp=True, shape=PADDED, options=option(COOKIE, CLIENT_COOKIE))
    assert len(msg.raw) % 468 == 0
    codes = [code for code, _ in msg.options]
    assert codes == [COOKIE, KEEPALIVE, PADDING]
    assert set(msg.options[-1][1]) <= {0}


def test_tcp_pad_needs_edns_and_tcp(zones: ZoneSet) -> None:
    engine = responder(zones)
    assert len(parse(engine.respond(query("www.example.com"), V4, True, PADDED)).raw) == 81
    assert [code for code, _ in ask(engine).options] == []


@pytest.mark.parametrize("kind", ["badvers", "formerr"])
def test_tcp_pad_pads_error_responses_with_an_opt(zones: ZoneSet, kind: str) -> None:
    # gdnsd 3.8.1 with tcp_pad pads BADVERS and FORMERR answers too (468 bytes).
    engine = responder(zones)
    if kind == "badvers":
        packet = query("www.example.com", edns=opt_rr(version=1))
    else:
        packet = query("www.example.com", edns=opt_rr())
        packet = packet[:11] + b"\x02" + packet[12:] + opt_rr()
    msg = parse(engine.respond(packet, V4, True, PADDED))
    assert msg.rcode == (16 if kind == "badvers" else 1)
    assert len(msg.raw) == 468
    assert [code for code, _ in msg.options] == [KEEPALIVE, PADDING]


# -- NSID ------------------------------------------------------------------


def test_nsid_only_when_asked_and_configured(zones: ZoneSet) -> None:
    configured = responder(zones, nsid=b"\x01\x23\xab")
    assert ask(configured, options=option(NSID, b"")).options == [(NSID, b"\x01\x23\xab")]
    assert ask(configured).options == []
    assert ask(responder(zones), options=option(NSID, b"")).options == []


# -- edns-client-subnet ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "echo"),
    [
        (b"\x00\x01\x18\x00\xc0\x00\x02", b"\x00\x01\x18\x00\xc0\x00\x02"),
        (b"\x00\x01\x00\x00", b"\x00\x01\x00\x00"),
        (b"\x00\x01\x17\x00\xc0\x00\x02", b"\x00\x01\x17\x00\xc0\x00\x02"),
        (b"\x00\x02\x38\x00" + bytes.fromhex("20010db8000001"), b"\x00\x02\x38\x00" + bytes.fromhex("20010db8000001")),
    ],
    ids=["v4-24", "v4-0", "v4-23", "v6-56"],
)
def test_client_subnet_is_echoed_with_scope_zero(engine: Responder, data: bytes, echo: bytes) -> None:
    msg = ask(engine, options=option(ECS, data))
    assert msg.rcode == 0
    assert msg.options == [(ECS, echo)]
    assert engine.stats.dns["edns_clientsub"] == 1


def test_client_subnet_is_ignored_when_disabled(zones: ZoneSet) -> None:
    engine = responder(zones, edns_client_subnet=False)
    assert ask(engine, options=option(ECS, b"\x00\x01\x18\x00\xc0\x00\x02")).options == []
    assert engine.stats.dns["edns_clientsub"] == 0


def test_option_order(zones: ZoneSet) -> None:
    engine = responder(zones, nsid=b"id")
    opts = option(NSID, b"") + option(COOKIE, CLIENT_COOKIE) + option(ECS, b"\x00\x01\x00\x00")
    msg = ask(engine, tcp=True, options=opts)
    assert [code for code, _ in msg.options] == [ECS, COOKIE, KEEPALIVE, NSID]


# -- cookies ---------------------------------------------------------------


def test_client_cookie_gets_a_server_cookie(zones: ZoneSet) -> None:
    engine = responder(zones, cookie_secret=SECRET)
    first = cookie_from(ask(engine, options=option(COOKIE, CLIENT_COOKIE)))
    assert len(first) == 16
    assert first[:8] == CLIENT_COOKIE
    assert engine.stats.dns["edns_cookie_init"] == 1
    # Stable for one client and secret; different for another address or secret.
    assert cookie_from(ask(engine, options=option(COOKIE, CLIENT_COOKIE))) == first
    assert cookie_from(ask(engine, client=V6, options=option(COOKIE, CLIENT_COOKIE))) != first
    other_secret = responder(zones, cookie_secret=bytes(32))
    assert cookie_from(ask(other_secret, options=option(COOKIE, CLIENT_COOKIE))) != first


def test_valid_and_bad_server_cookies(zones: ZoneSet) -> None:
    engine = responder(zones, cookie_secret=SECRET)
    full = cookie_from(ask(engine, options=option(COOKIE, CLIENT_COOKIE)))
    again = ask(engine, options=option(COOKIE, full))
    assert again.rcode == 0
    assert cookie_from(again) == full
    assert engine.stats.dns["edns_cookie_ok"] == 1
    forged = CLIENT_COOKIE + bytes(8)
    bad = ask(engine, options=option(COOKIE, forged))
    assert bad.rcode == 0  # no BADCOOKIE: a fresh cookie instead
    assert cookie_from(bad) == full
    long_unknown = ask(engine, options=option(COOKIE, CLIENT_COOKIE + b"z" * 32))
    assert cookie_from(long_unknown) == full
    assert engine.stats.dns["edns_cookie_bad"] == 2
    # A cookie made for another address is not valid here.
    ask(engine, client=V6, options=option(COOKIE, full))
    assert engine.stats.dns["edns_cookie_bad"] == 3


def test_disable_cookies(zones: ZoneSet) -> None:
    engine = responder(zones, disable_cookies=True)
    msg = ask(engine, options=option(COOKIE, CLIENT_COOKIE))
    assert msg.rcode == 0
    assert msg.options == []
    assert engine.stats.dns["edns_cookie_init"] == 0


def cookie_only_query(options: bytes, *, opcode: int = 0, version: int = 0, do: bool = False) -> bytes:
    """A query with no question (QDCOUNT 0), only an OPT record carrying ``options``."""
    header = struct.pack("!HBBHHHH", 0x4242, opcode << 3, 0, 0, 0, 0, 1)
    return header + opt_rr(options=options, version=version, do=do)


def test_a_cookie_only_query_gets_noerror_with_a_server_cookie(zones: ZoneSet) -> None:
    # RFC 7873 section 5.4; gdnsd answers so whatever the cookie's state (050cookies.t).
    engine = responder(zones, cookie_secret=SECRET, nsid=b"id")
    full = cookie_from(ask(engine, options=option(COOKIE, CLIENT_COOKIE)))
    before = dict(engine.stats.dns.values)
    for sent in (CLIENT_COOKIE, full, CLIENT_COOKIE + bytes(8)):
        msg = parse(engine.respond(cookie_only_query(option(COOKIE, sent) + option(NSID, b"")), V4, False))
        assert msg.rcode == 0
        assert not msg.aa
        assert (msg.qdcount, msg.counts) == (0, (0, 0, 1))
        assert msg.options == [(COOKIE, full), (NSID, b"id")]
    counted = {name: engine.stats.dns[name] - before[name] for name in before}
    assert {name: n for name, n in counted.items() if n} == {
        "noerror": 3,
        "edns": 3,
        "edns_cookie_init": 1,
        "edns_cookie_ok": 1,
        "edns_cookie_bad": 1,
    }


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (cookie_only_query(b""), 1),  # no cookie: FORMERR
        (cookie_only_query(option(COOKIE, CLIENT_COOKIE), opcode=2), 4),  # NOTIMP, the cookie still answered
        (cookie_only_query(option(COOKIE, CLIENT_COOKIE), version=1), 16),  # BADVERS first
    ],
    ids=["no-cookie", "opcode", "version"],
)
def test_a_questionless_query_without_a_usable_cookie(zones: ZoneSet, packet: bytes, rcode: int) -> None:
    engine = responder(zones, cookie_secret=SECRET)
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == rcode
    assert msg.qdcount == 0
    assert [code for code, _ in msg.options] == ([COOKIE] if rcode == 4 else [])


def test_a_cookie_only_query_is_formerr_with_cookies_disabled(zones: ZoneSet) -> None:
    engine = responder(zones, disable_cookies=True)
    msg = parse(engine.respond(cookie_only_query(option(COOKIE, CLIENT_COOKIE)), V4, False))
    assert msg.rcode == 1
    assert msg.options == []
    # Ignored whole: a cookie of no valid length is no FORMERR either.
    assert ask(engine, options=option(COOKIE, b"12345")).rcode == 0
    assert engine.stats.dns["edns_cookie_formerr"] == 0


@pytest.mark.parametrize("second", [b"abcdefgh", b"abc", CLIENT_COOKIE + bytes(8)], ids=["init", "bad-length", "bad"])
def test_only_the_first_cookie_option_counts(zones: ZoneSet, second: bytes) -> None:
    # gdnsd skips later cookie options unread (019bad.t, "2x cookies").
    engine = responder(zones, cookie_secret=SECRET)
    msg = ask(engine, options=option(COOKIE, CLIENT_COOKIE) + option(COOKIE, second))
    assert msg.rcode == 0
    assert cookie_from(msg)[:8] == CLIENT_COOKIE
    assert engine.stats.dns["edns_cookie_init"] == 1
    assert engine.stats.dns["edns_cookie_bad"] + engine.stats.dns["edns_cookie_formerr"] == 0


def test_a_bad_first_cookie_option_is_formerr(zones: ZoneSet) -> None:
    engine = responder(zones, cookie_secret=SECRET)
    msg = ask(engine, options=option(COOKIE, b"abc") + option(COOKIE, CLIENT_COOKIE))
    assert msg.rcode == 1
    assert msg.options == []
    assert engine.stats.dns["edns_cookie_formerr"] == 1
    assert engine.stats.dns["edns_cookie_init"] == 0


# A client-subnet option with the prefix past the family's bits: malformed.
BAD_ECS = option(ECS, b"\x00\x01\x21\x00\x0a\x00\x00\x00\x00")


@pytest.mark.parametrize(
    ("options", "answered"),
    [
        (option(COOKIE, CLIENT_COOKIE) + BAD_ECS + option(NSID, b""), [COOKIE]),
        (option(NSID, b"") + BAD_ECS + option(COOKIE, CLIENT_COOKIE), [NSID]),
        (BAD_ECS + option(NSID, b""), []),
        (option(ECS, b"\x00\x01\x08\x00\x0a") + option(COOKIE, b"abc"), [ECS]),
    ],
    ids=["cookie-then-bad", "nsid-then-bad", "bad-first", "ecs-then-bad-cookie"],
)
def test_formerr_answers_the_options_read_before_the_bad_one(
    zones: ZoneSet, options: bytes, answered: list[int]
) -> None:
    # gdnsd reads options in order and stops at the first bad one.
    engine = responder(zones, cookie_secret=SECRET, nsid=b"id")
    msg = ask(engine, options=options)
    assert msg.rcode == 1
    assert [code for code, _ in msg.options] == answered
    assert engine.stats.dns["edns_cookie_init"] == (COOKIE in answered)


def test_every_client_subnet_option_counts(zones: ZoneSet) -> None:
    # gdnsd counts each option in edns_clientsub, malformed ones too (039clientsub.t), and echoes the last.
    engine = responder(zones)
    first, last = b"\x00\x01\x18\x00\x0a\x00\x00", b"\x00\x01\x10\x00\x0b\x01"
    msg = ask(engine, options=option(ECS, first) + option(ECS, last))
    assert msg.options == [(ECS, last)]
    assert engine.stats.dns["edns_clientsub"] == 2
    assert ask(engine, options=BAD_ECS).rcode == 1
    assert engine.stats.dns["edns_clientsub"] == 3


def test_a_newer_edns_version_is_badvers_before_its_options_are_read(zones: ZoneSet) -> None:
    engine = responder(zones, cookie_secret=SECRET)
    msg = ask(engine, version=1, options=option(COOKIE, b"abc") + BAD_ECS)
    assert msg.rcode == 16
    assert engine.stats.dns["badvers"] == 1
    assert engine.stats.dns["edns_cookie_formerr"] + engine.stats.dns["edns_clientsub"] == 0


def test_error_responses_count_edns_do(engine: Responder) -> None:
    ask(engine, do=True, options=option(COOKIE, b"abc"))  # FORMERR
    ask(engine, do=True, version=1)  # BADVERS
    engine.respond(query("www.example.com", opcode=2, edns=opt_rr(do=True)), V4, False)  # NOTIMP
    assert engine.stats.dns["edns_do"] == 3


def test_max_nocookie_response_truncates_only_without_a_valid_cookie(zones: ZoneSet) -> None:
    engine = responder(zones, max_nocookie_response=512, cookie_secret=SECRET)
    assert ask(engine, "big.example.com", size=4096).tc
    init = ask(engine, "big.example.com", size=4096, options=option(COOKIE, CLIENT_COOKIE))
    assert init.tc
    full = cookie_from(init)
    ok = ask(engine, "big.example.com", size=4096, options=option(COOKIE, full))
    assert not ok.tc
    assert len(ok.answer) == 40
    assert ask(engine, "big.example.com", size=4096, options=option(COOKIE, CLIENT_COOKIE + bytes(8))).tc
    assert not ask(engine, "big.example.com", tcp=True, size=4096).tc
    # Small answers fit under the limit without any cookie.
    assert not ask(engine, "www.example.com", size=4096).tc


def test_max_nocookie_response_applies_to_queries_without_edns(zones: ZoneSet) -> None:
    # gdnsd 3.8.1 (max_nocookie_response 200): a 355-byte answer without EDNS comes back TC.
    plain = ask_plain(responder(zones), "mid.example.com", TXT)
    assert 128 < len(plain.raw) < 512 and not plain.tc
    engine = responder(zones, max_nocookie_response=128)
    msg = ask_plain(engine, "mid.example.com", TXT)
    assert msg.tc
    assert msg.counts == (0, 0, 0)
    assert msg.opt is None
    assert not ask_plain(engine, "mid.example.com", TXT, tcp=True).tc


def test_tcp_pad_with_a_bare_opt(zones: ZoneSet) -> None:
    engine = responder(zones)
    for closing in (False, True):
        msg = ask(engine, tcp=True, shape=TcpShape.of(37, True, closing=closing), do=True)
        assert len(msg.raw) == 468
        assert [code for code, _ in msg.options] == [KEEPALIVE, PADDING]
        assert msg.options[0][1] == (b"\x00\x00" if closing else b"\x01\x72")
        assert msg.opt is not None and msg.opt.ttl == 0x8000
