"""Engine: DNS Stateful Operations (RFC 8490), as gdnsd 3.8.1 answers them (029tcp_dso/058dso.t).

``engine.dso`` answers a DSO request on a TCP connection; ``Responder``
answers every other DSO-opcode message (UDP, records) and keeps a session's
answers free of the edns-tcp-keepalive option. The bytes expected here are
the ones 058dso.t compares, and ``tests/differential/test_dso_proxy_differential.py``
compares them with Debian's gdnsd.
"""

from __future__ import annotations

import struct

import pytest

from engine_support import (
    V4,
    engine_fixture,
    opt_rr,
    option,
    parse,
    query,
    responder,
    zones_fixture,
)
from pygdnsd.engine import dso
from pygdnsd.engine.responder import Responder
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.zones.model import ZoneSet

KEEPALIVE_OPTION, COOKIE = 11, 10
INACTIVITY = 37000

zones = zones_fixture()
engine = engine_fixture()


def dso_message(ident: int, *tlvs: bytes, flags: int = 0x30, counts: tuple[int, int, int, int] = (0, 0, 0, 0)) -> bytes:
    return struct.pack("!HBBHHHH", ident, flags, 0, *counts) + b"".join(tlvs)


def tlv(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


KEEPALIVE = tlv(dso.TLV_KEEPALIVE, struct.pack("!II", 1234, 5678))


# -- what engine.dso answers -------------------------------------------------


def test_keepalive_is_answered_with_an_infinite_interval_and_our_inactivity() -> None:
    reply = dso.answer(dso_message(50505, KEEPALIVE, tlv(dso.TLV_PADDING, b"0123456789abc")), INACTIVITY, False)
    assert reply.outcome is dso.Outcome.KEEPALIVE
    # QR + opcode 6, NOERROR, no records, the Keepalive TLV (the client's padding is not echoed).
    assert reply.response == struct.pack("!HBBHHHH HHII", 50505, 0xB0, 0, 0, 0, 0, 0, 1, 8, 0xFFFFFFFF, INACTIVITY)


def test_the_response_clears_rd_and_the_other_flags() -> None:
    reply = dso.answer(dso_message(7, KEEPALIVE, flags=0x30 | 0x07), 0, False)
    assert reply.response is not None
    assert reply.response[2:4] == b"\xb0\x00"


def test_keepalive_on_a_padded_connection_is_468_bytes() -> None:
    reply = dso.answer(dso_message(1, KEEPALIVE), INACTIVITY, True)
    assert reply.response is not None
    assert len(reply.response) == 468
    assert reply.response[24:28] == struct.pack("!HH", dso.TLV_PADDING, 440)
    assert set(reply.response[28:]) == {0}


@pytest.mark.parametrize("pad", [False, True])
def test_an_unknown_primary_tlv_gets_dsotypeni_and_no_session(pad: bool) -> None:
    reply = dso.answer(dso_message(9, tlv(0xFBFF, bytes(8))), INACTIVITY, pad)
    assert reply.outcome is dso.Outcome.TYPE_NOT_IMPLEMENTED
    expected = struct.pack("!HBBHHHH", 9, 0xB0, dso.RCODE_DSOTYPENI, 0, 0, 0, 0)
    if pad:
        expected += struct.pack("!HH", dso.TLV_PADDING, 452) + bytes(452)
    assert reply.response == expected


@pytest.mark.parametrize(
    "message",
    [
        dso_message(0, tlv(0xFBFF, bytes(8))),  # unidirectional from the client
        dso_message(1) + b"\xfb\xff",  # no room for a primary TLV
        dso_message(1),  # no TLV at all
        dso_message(1, tlv(dso.TLV_RETRY_DELAY, b"\x00\x00")),  # a server-only primary
        dso_message(1, tlv(dso.TLV_PADDING, b"abcdefg")),  # padding as primary
        dso_message(1, KEEPALIVE) + struct.pack("!HHH", 3, 3, 2),  # an additional TLV overruns
        dso_message(1, KEEPALIVE) + b"\x00",  # trailing junk
        dso_message(1, tlv(dso.TLV_KEEPALIVE, bytes(10))),  # keepalive of length 10
        dso_message(1, tlv(dso.TLV_KEEPALIVE, bytes(7))),
        dso_message(1, struct.pack("!HH", 0xFBFF, 9) + bytes(8)),  # unknown primary overruns
    ],
    ids=["uni", "short", "empty", "retry", "pad", "overrun", "junk", "ka10", "ka7", "unknown-overrun"],
)
def test_protocol_errors_get_no_answer(message: bytes) -> None:
    reply = dso.answer(message, INACTIVITY, True)
    assert reply.outcome is dso.Outcome.PROTOCOL_ERROR
    assert reply.response is None


def test_the_closing_keepalive_is_unidirectional_with_inactivity_zero() -> None:
    assert dso.closing_keepalive(False) == struct.pack("!HBBHHHH HHII", 0, 0x30, 0, 0, 0, 0, 0, 1, 8, 0xFFFFFFFF, 0)
    padded = dso.closing_keepalive(True)
    assert len(padded) == 468
    assert padded[24:28] == struct.pack("!HH", dso.TLV_PADDING, 440)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (dso_message(1, KEEPALIVE), True),
        (dso_message(0, KEEPALIVE), True),  # a protocol error, but still for dso.answer
        (dso_message(1, KEEPALIVE, flags=0xB0), False),  # QR set: dropped as any response
        (dso_message(1, KEEPALIVE, counts=(1, 0, 0, 0)), False),  # records: FORMERR
        (dso_message(1, KEEPALIVE, counts=(0, 0, 0, 1)), False),
        (dso_message(1, KEEPALIVE, flags=0x28), False),  # opcode 5
        (b"\x00\x01\x30\x00\x00\x00\x00\x00\x00\x00\x00", False),  # 11 bytes
    ],
)
def test_which_messages_are_session_requests(message: bytes, expected: bool) -> None:
    assert dso.is_request(message) is expected


# -- what the responder does with the DSO opcode -----------------------------


def test_dso_with_records_over_tcp_is_a_bare_formerr(engine: Responder) -> None:
    # 058dso.t T26: the question is not echoed, RD not copied.
    packet = dso_message(51000, b"\x03zzz\x00\x00\x01\x00\x01", flags=0x31, counts=(1, 0, 0, 0))
    assert engine.respond(packet, V4, True) == struct.pack("!HBBHHHH", 51000, 0xB0, 1, 0, 0, 0, 0)
    assert engine.stats.dns["formerr"] == 1


def test_dso_over_udp_is_a_bare_formerr(engine: Responder) -> None:
    # 058dso.t T23: even a well-formed keepalive.
    assert engine.respond(dso_message(77, KEEPALIVE), V4, False) == struct.pack("!HBBHHHH", 77, 0xB0, 1, 0, 0, 0, 0)


def test_dso_formerr_counts_the_opt_record_it_read(engine: Responder) -> None:
    packet = dso_message(78, opt_rr(do=True), counts=(0, 0, 0, 1))
    assert engine.respond(packet, V4, False) == struct.pack("!HBBHHHH", 78, 0xB0, 1, 0, 0, 0, 0)
    assert (engine.stats.dns["edns"], engine.stats.dns["edns_do"], engine.stats.dns["formerr"]) == (1, 1, 1)


@pytest.mark.parametrize("tcp", [False, True])
def test_with_disable_tcp_dso_the_opcode_is_notimp(zones: ZoneSet, tcp: bool) -> None:
    # 004misc/019bad.t T31: a keepalive over UDP with DSO disabled.
    engine = responder(zones, disable_tcp_dso=True)
    msg = parse(engine.respond(dso_message(5, KEEPALIVE, flags=0x31), V4, tcp))
    assert (msg.rcode, msg.opcode, msg.rd, msg.qdcount) == (4, 6, True, 0)
    assert engine.stats.dns["notimp"] == 1


IN_SESSION = TcpShape.of(37, False, dso=True)


def test_answers_in_a_session_carry_no_keepalive_option(engine: Responder) -> None:
    for edns in (opt_rr(size=1024), opt_rr(options=option(COOKIE, b"ABCDEFGH"))):
        msg = parse(engine.respond(query("www.example.com", edns=edns), V4, True, IN_SESSION))
        assert KEEPALIVE_OPTION not in dict(msg.options)
    outside = parse(engine.respond(query("www.example.com", edns=opt_rr()), V4, True, TcpShape.of(37, False)))
    assert dict(outside.options)[KEEPALIVE_OPTION] == b"\x01\x72"


def test_a_keepalive_option_in_a_session_is_a_protocol_error(engine: Responder) -> None:
    # 058dso.t T10-12: dropped, counted as dropped and edns and dso_protoerr.
    packet = query("www.example.com", edns=opt_rr(options=option(KEEPALIVE_OPTION, b"\x01\x72")))
    assert engine.respond(packet, V4, True, IN_SESSION) is None
    stats = engine.stats
    assert (stats.dns["dropped"], stats.dns["edns"], stats.tcp["dso_protoerr"]) == (1, 1, 1)
    # Outside a session the same query is answered.
    assert parse(engine.respond(packet, V4, True)).rcode == 0


def test_the_protocol_error_comes_before_a_later_malformed_option(engine: Responder) -> None:
    keepalive = option(KEEPALIVE_OPTION, b"")
    malformed = option(COOKIE, b"abc")
    first = query("www.example.com", edns=opt_rr(options=keepalive + malformed))
    assert engine.respond(first, V4, True, IN_SESSION) is None
    later = query("www.example.com", edns=opt_rr(options=malformed + keepalive))
    assert parse(engine.respond(later, V4, True, IN_SESSION)).rcode == 1
    assert engine.stats.tcp["dso_protoerr"] == 1


def test_a_keepalive_option_with_edns_version_1_is_badvers(engine: Responder) -> None:
    # Options of an unknown EDNS version are not read.
    packet = query("www.example.com", edns=opt_rr(version=1, options=option(KEEPALIVE_OPTION, b"")))
    assert parse(engine.respond(packet, V4, True, IN_SESSION)).rcode == 16
