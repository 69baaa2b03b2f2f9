"""Engine: header bits, dropped packets and the error matrix of docs/gdnsd-behaviour.md."""

from __future__ import annotations

import struct

import pytest

from engine_support import (
    AAAA,
    OPT,
    TXT,
    V4,
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
from pygdnsd.engine.responder import Responder
from pygdnsd.zones.model import ZoneSet

QUESTION = wire_name("www.example.com") + struct.pack("!HH", A, 1)


zones = zones_fixture()
engine = engine_fixture(nsid=b"ns-1")


def header(ident: int, byte2: int, byte3: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HBBHHHH", ident, byte2, byte3, qd, an, ns, ar)


# -- header bits -----------------------------------------------------------


@pytest.mark.parametrize("rd", [True, False])
def test_id_copied_qr_set_rd_copied_no_ra(engine: Responder, rd: bool) -> None:
    msg = parse(engine.respond(query("www.example.com", ident=0xBEEF, rd=rd), V4, False))
    assert msg.ident == 0xBEEF
    assert msg.qr
    assert msg.rd is rd
    assert not msg.ra
    assert msg.aa


def test_query_flag_bits_and_rcode_are_ignored(engine: Responder) -> None:
    # AA, TC, RA, Z, AD, CD set and rcode 3 in the query: none of it is copied.
    noisy = query("www.example.com", flags=0x0400 | 0x0200 | 0x0080 | 0x0040 | 0x0020 | 0x0010 | 0x0003)
    msg = parse(engine.respond(noisy, V4, False))
    assert msg.flags & 0x7FFF == 0x0500  # AA (ours) + RD, rcode 0
    assert len(msg.answer) == 3


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00",  # 11 bytes
        query("www.example.com", flags=0x8000),  # QR set: a response, not a query
    ],
    ids=["empty", "short", "qr"],
)
@pytest.mark.parametrize("tcp", [False, True])
def test_dropped_packets_get_no_response(engine: Responder, packet: bytes, tcp: bool) -> None:
    assert engine.respond(packet, V4, tcp) is None
    assert engine.stats.dns["dropped"] == 1
    assert engine.stats.dns["formerr"] == 0


def test_dso_over_udp_is_formerr_without_question(engine: Responder) -> None:
    msg = parse(engine.respond(header(7, 6 << 3, 0, 0), V4, False))
    assert msg.rcode == 1
    assert msg.opcode == 6
    assert msg.qdcount == 0
    assert msg.opt is None


# -- NOTIMP ----------------------------------------------------------------


@pytest.mark.parametrize("opcode", [1, 2, 3, 4, 5, 15])
def test_other_opcodes_are_notimp_with_the_opcode_and_question_echoed(engine: Responder, opcode: int) -> None:
    msg = parse(engine.respond(query("www.example.com", opcode=opcode, rd=True), V4, False))
    assert msg.rcode == 4
    assert msg.opcode == opcode
    assert msg.rd
    assert not msg.aa
    assert msg.question == QUESTION
    assert msg.counts == (0, 0, 0)
    assert engine.stats.dns["notimp"] == 1


@pytest.mark.parametrize("qtype", [249, 250, 251, 252, 253, 254])
@pytest.mark.parametrize("tcp", [False, True])
def test_transfer_and_meta_qtypes_are_notimp_for_any_name(engine: Responder, qtype: int, tcp: bool) -> None:
    for name in ("example.com", "elsewhere.test"):
        msg = parse(engine.respond(query(name, qtype, edns=opt_rr()), V4, tcp))
        assert msg.rcode == 4
        assert not msg.aa
        assert msg.question == wire_name(name) + struct.pack("!HH", qtype, 1)
        assert msg.counts[:2] == (0, 0)
        assert msg.opt is not None


@pytest.mark.parametrize("qtype", [0, OPT])
def test_qtype_0_and_opt_are_plain_nodata(engine: Responder, qtype: int) -> None:
    msg = parse(engine.respond(query("www.example.com", qtype), V4, False))
    assert msg.rcode == 0
    assert msg.aa
    assert msg.answer == []
    assert [rr.rtype for rr in msg.authority] == [6]


# -- REFUSED ---------------------------------------------------------------


@pytest.mark.parametrize("qclass", [1, 255])
def test_names_outside_our_zones_are_refused(engine: Responder, qclass: int) -> None:
    msg = parse(engine.respond(query("www.example.org", A, qclass, edns=opt_rr()), V4, False))
    assert msg.rcode == 5
    assert not msg.aa
    assert msg.question == wire_name("www.example.org") + struct.pack("!HH", A, qclass)
    assert msg.counts == (0, 0, 1)
    assert msg.opt is not None
    assert engine.stats.dns["refused"] == 1


@pytest.mark.parametrize("qclass", [2, 4, 42, 254])
def test_other_classes_are_refused_even_inside_our_zones(engine: Responder, qclass: int) -> None:
    msg = parse(engine.respond(query("www.example.com", A, qclass), V4, False))
    assert msg.rcode == 5
    assert not msg.aa
    assert msg.counts == (0, 0, 0)


# -- FORMERR ---------------------------------------------------------------


def test_no_question_is_formerr_with_opt_when_the_query_had_one(engine: Responder) -> None:
    packet = header(9, 0x01, 0, 0, ar=1) + opt_rr(do=True, options=option(3, b""))
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.rd
    assert not msg.aa
    assert msg.qdcount == 0
    assert msg.opt is not None
    assert msg.opt.ttl & 0x8000  # DO echoed
    assert msg.options == [(3, b"ns-1")]
    assert engine.stats.dns["formerr"] == 1


def test_no_question_without_opt_is_bare_formerr(engine: Responder) -> None:
    msg = parse(engine.respond(header(9, 0, 0, 0), V4, False))
    assert (msg.rcode, msg.qdcount, msg.counts) == (1, 0, (0, 0, 0))


def test_two_questions_echo_the_first_and_keep_the_opt(engine: Responder) -> None:
    second = wire_name("mail.example.com") + struct.pack("!HH", A, 1)
    packet = header(9, 0, 0, 2, ar=1) + QUESTION + second + opt_rr()
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.qdcount == 1
    assert msg.question == QUESTION
    assert msg.opt is not None


@pytest.mark.parametrize(
    "packet",
    [
        header(9, 0, 0, 1),  # header only
        header(9, 0, 0, 1) + QUESTION[:6],  # name cut
        header(9, 0, 0, 1) + QUESTION[:-2],  # class cut
    ],
    ids=["header-only", "name-cut", "class-cut"],
)
def test_truncated_question_is_formerr_with_nothing_echoed(engine: Responder, packet: bytes) -> None:
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.qdcount == 0
    assert msg.counts == (0, 0, 0)


@pytest.mark.parametrize("counts", [(1, 0, 0), (0, 1, 0), (0, 0, 1)], ids=["an", "ns", "ar"])
def test_missing_records_are_formerr_with_question_and_no_opt(engine: Responder, counts: tuple[int, int, int]) -> None:
    packet = header(9, 0, 0, 1, *counts) + QUESTION
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.question == QUESTION
    assert msg.counts == (0, 0, 0)


def test_opt_cut_short_is_formerr_without_opt(engine: Responder) -> None:
    packet = header(9, 0, 0, 1, ar=1) + QUESTION + opt_rr()[:7]
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.question == QUESTION
    assert msg.opt is None


@pytest.mark.parametrize(
    "opt",
    [
        b"\x00" + struct.pack("!HHIH", OPT, 4096, 0, 10) + option(3, b""),  # rdlen past the end
        opt_rr(options=struct.pack("!HH", 65001, 9) + b"abc"),  # option overruns the rdata
        opt_rr(options=b"\x00\x03\x00"),  # option header cut
    ],
    ids=["rdlen", "option-overrun", "option-header"],
)
def test_malformed_opt_rdata_is_formerr_with_opt(engine: Responder, opt: bytes) -> None:
    packet = header(9, 0, 0, 1, ar=1) + QUESTION + opt
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.question == QUESTION
    assert msg.opt is not None
    assert not msg.aa


def test_two_opt_records_are_formerr_with_opt(engine: Responder) -> None:
    packet = header(9, 0, 0, 1, ar=2) + QUESTION + opt_rr() + opt_rr()
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.question == QUESTION
    assert msg.counts == (0, 0, 1)


def test_opt_in_the_answer_section_is_not_edns(engine: Responder) -> None:
    packet = header(9, 0, 0, 1, an=1) + QUESTION + opt_rr()
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 0
    assert msg.opt is None
    assert len(msg.answer) == 3
    assert engine.stats.dns["edns"] == 0


def test_opt_typed_record_with_an_owner_name_is_not_edns(engine: Responder) -> None:
    fake = wire_name("x") + struct.pack("!HHIH", OPT, 4096, 0, 0)
    msg = parse(engine.respond(header(9, 0, 0, 1, ar=1) + QUESTION + fake, V4, False))
    assert msg.rcode == 0
    assert msg.opt is None


def test_other_records_before_the_opt_are_skipped(engine: Responder) -> None:
    other = b"\xc0\x0c" + struct.pack("!HHIH", TXT, 1, 0, 2) + b"\x01x"
    packet = header(9, 0, 0, 1, ar=2) + QUESTION + other + opt_rr(do=True)
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 0
    assert msg.opt is not None
    assert msg.opt.ttl & 0x8000


# -- BADVERS ---------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True])
def test_badvers_shape(engine: Responder, tcp: bool) -> None:
    opts = option(3, b"") + option(10, b"12345678")
    raw = engine.respond(query("www.example.com", AAAA, edns=opt_rr(do=True, version=1, options=opts)), V4, tcp)
    msg = parse(raw)
    assert msg.flags & 0x0F == 0
    assert msg.rcode == 16
    assert not msg.aa
    assert msg.question == wire_name("www.example.com") + struct.pack("!HH", AAAA, 1)
    assert msg.counts == (0, 0, 1)
    assert msg.opt is not None
    assert msg.opt.ttl == 0x01008000  # ext rcode 1, version 0, DO echoed
    assert msg.opt.rclass == 1024
    # No NSID and no cookie; over TCP only the keepalive.
    assert msg.options == ([(11, b"\x01\x72")] if tcp else [])
    assert engine.stats.dns["badvers"] == 1
    assert engine.stats.dns["noerror"] == 0


def test_badvers_udp_bytes() -> None:
    # The exact OPT bytes gdnsd sends for a DO query (docs/gdnsd-behaviour.md).
    engine = responder(ZoneSet())
    raw = engine.respond(query("x.test", edns=opt_rr(do=True, version=3)), V4, False)
    assert raw is not None
    assert raw.endswith(bytes.fromhex("0000290400010080000000"))


# -- edns-client-subnet and cookie FORMERRs -------------------------------


def ask_with_option(engine: Responder, code: int, data: bytes) -> Message:
    """The answer to www.example.com A whose OPT carries the one option ``code`` with ``data``."""
    return parse(engine.respond(query("www.example.com", edns=opt_rr(options=option(code, data))), V4, False))


def check_formerr_with_opt(msg: Message) -> None:
    """A malformed option's answer: FORMERR echoing the question, with our OPT."""
    assert msg.rcode == 1
    assert msg.question == QUESTION
    assert msg.opt is not None


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!HBB", 1, 24, 8) + b"\xc0\x00\x02",  # scope != 0
        struct.pack("!HBB", 1, 24, 0) + b"\xc0\x00\x02\x00",  # address longer than the prefix
        struct.pack("!HBB", 1, 24, 0) + b"\xc0\x00",  # address shorter
        struct.pack("!HBB", 3, 0, 0),  # unknown family
        struct.pack("!HBB", 1, 33, 0) + b"\x00" * 5,  # prefix past 32
        b"\x00\x01\x18",  # too short for the fixed fields
    ],
    ids=["scope", "long-address", "short-address", "family", "prefix", "short"],
)
def test_bad_client_subnet_is_formerr_with_opt(engine: Responder, data: bytes) -> None:
    check_formerr_with_opt(ask_with_option(engine, 8, data))
    assert engine.stats.dns["formerr"] == 1
    assert engine.stats.dns["edns_cookie_formerr"] == 0


def test_bad_client_subnet_is_ignored_when_the_option_is_off(zones: ZoneSet) -> None:
    engine = responder(zones, edns_client_subnet=False)
    msg = ask_with_option(engine, 8, struct.pack("!HBB", 3, 0, 9))
    assert msg.rcode == 0
    assert msg.options == []
    assert engine.stats.dns["edns_clientsub"] == 0


@pytest.mark.parametrize("length", [0, 5, 9, 15, 41])
def test_bad_cookie_length_is_formerr(engine: Responder, length: int) -> None:
    check_formerr_with_opt(ask_with_option(engine, 10, b"c" * length))
    assert engine.stats.dns["edns_cookie_formerr"] == 1
    assert engine.stats.dns["formerr"] == 1


# -- malformed corners -----------------------------------------------------


def test_label_longer_than_63_in_the_question_is_formerr(engine: Responder) -> None:
    packet = header(9, 0, 0, 1) + b"\x40" + b"a" * 64 + b"\x00" + struct.pack("!HH", A, 1)
    msg = parse(engine.respond(packet, V4, False))
    assert (msg.rcode, msg.qdcount) == (1, 0)


def test_bad_owner_label_in_additional_is_formerr(engine: Responder) -> None:
    packet = header(9, 0, 0, 1, ar=1) + QUESTION + b"\x41" + b"a" * 10
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.question == QUESTION
    assert msg.opt is None


def test_non_opt_record_running_past_the_end_is_formerr_without_opt(engine: Responder) -> None:
    other = b"\xc0\x0c" + struct.pack("!HHIH", TXT, 1, 0, 40) + b"\x01x"
    packet = header(9, 0, 0, 1, ar=2) + QUESTION + opt_rr() + other
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == 1
    assert msg.opt is None


@pytest.mark.parametrize(
    ("options", "cookie_formerr"),
    [
        (option(3, b"x"), 0),  # NSID in a query must be empty
        (option(10, b"12345"), 1),  # a cookie of no valid length
        (option(8, b"\x00\x01\x17\x00\xc0\x00\x03"), 0),  # ECS address bits past the /23
    ],
    ids=["nsid-data", "cookie-length", "ecs-bits"],
)
def test_malformed_options_are_formerr_with_opt(engine: Responder, options: bytes, cookie_formerr: int) -> None:
    msg = parse(engine.respond(query("www.example.com", edns=opt_rr(options=options)), V4, False))
    assert msg.rcode == 1
    assert msg.opt is not None
    assert msg.options == []  # nothing read before the bad option, so nothing to answer
    assert engine.stats.dns["edns_cookie_formerr"] == cookie_formerr


@pytest.mark.parametrize(
    ("extra", "rcode"),
    [(b"", 4), (opt_rr(do=True), 4), (opt_rr()[:5], 1), (opt_rr(options=b"\x00\x03\x00"), 1)],
    ids=["none", "opt", "opt-cut", "opt-bad"],
)
def test_notimp_opcode_once_the_records_parse(engine: Responder, extra: bytes, rcode: int) -> None:
    # gdnsd reads every record before it looks at the opcode: a malformed one is FORMERR.
    packet = header(9, 5 << 3, 0, 1, ar=1 if extra else 0) + QUESTION + extra
    msg = parse(engine.respond(packet, V4, False))
    assert msg.rcode == rcode
    assert msg.opcode == 5
    assert (msg.opt is not None) == (extra in (opt_rr(do=True), opt_rr(options=b"\x00\x03\x00")))
