"""The control protocol codec: header layout, framing, challenges, robustness on garbage."""

from __future__ import annotations

import contextlib
import random
import struct
import sys

import pytest

from pygdnsd.control import protocol
from pygdnsd.control.protocol import (
    Header,
    ProtocolError,
    RequestKey,
    RequestReader,
    ResponseKey,
)

# What Debian's gdnsdctl 3.8.1 sent for
# `acme-dns-01 example.com 0123...012 www.Example.org. ABC...nop` (captured once).
GDNSDCTL_CHALLENGES = (
    b"\r\x07example\x03com\x000123456789012345678901234567890123456789012\x00"
    b"\x11\x03www\x07example\x03org\x00ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnop\x00"
)


def test_keys_are_the_documented_bytes() -> None:
    assert {k.name: chr(k) for k in RequestKey} == {
        "INFO": "I",
        "STAT": "S",
        "STATE": "E",
        "ZREL": "Z",
        "STOP": "X",
        "REPL": "R",
        "CHAL": "C",
        "CHALF": "c",
        "TAK1": "1",
        "TAK2": "2",
        "TAKE": "T",
    }
    assert {k.name: chr(k) for k in ResponseKey} == {
        "ACK": "A",
        "DENY": "D",
        "FAIL": "F",
        "LATR": "L",
        "UNK": "U",
    }
    assert chr(protocol.PSH_SHAND) == "s"


def test_header_layout_is_key_v0_v1_v2_then_host_order_d() -> None:
    raw = Header(ord("A"), 3, 8, 1, 0x01020304).encode()
    assert raw[:4] == b"A\x03\x08\x01"
    assert raw[4:] == (0x01020304).to_bytes(4, sys.byteorder)
    assert protocol.decode_header(raw) == Header(ord("A"), 3, 8, 1, 0x01020304)


def test_count_is_v_as_24_bit_network_order() -> None:
    header = protocol.header_with_count(ord("C"), 0x010203, 7)
    assert header.encode()[1:4] == b"\x01\x02\x03"
    assert header.count == 0x010203
    with pytest.raises(ProtocolError):
        protocol.header_with_count(ord("C"), 1 << 24)


def test_out_of_range_fields_are_refused() -> None:
    with pytest.raises(ProtocolError):
        Header(256)
    with pytest.raises(ProtocolError):
        Header(ord("I"), d=1 << 32)
    with pytest.raises(ProtocolError):
        protocol.decode_header(b"I\0\0")


def test_info_exchange_encodings() -> None:
    assert protocol.info_request((3, 8, 1)).encode()[:4] == b"I\x03\x08\x01"
    ack = protocol.info_ack((3, 8, 1), 4242)
    assert ack.header.version == (3, 8, 1)
    assert struct.unpack("=I", ack.encode()[4:])[0] == 4242
    assert protocol.response_payload_length(RequestKey.INFO, ack.header) == 0


def test_data_ack_carries_its_length_and_payload_length_depends_on_request() -> None:
    ack = protocol.data_ack(b'{"x": 1}')
    assert ack.header.d == 8
    assert ack.encode()[8:] == b'{"x": 1}'
    assert protocol.response_payload_length(RequestKey.STAT, ack.header) == 8
    assert protocol.response_payload_length(RequestKey.STATE, ack.header) == 8
    # A FAIL never carries data, whatever d says.
    fail = Header(ResponseKey.FAIL, d=99)
    assert protocol.response_payload_length(RequestKey.STAT, fail) == 0
    huge = Header(ResponseKey.ACK, d=protocol.MAX_RESPONSE_PAYLOAD + 1)
    with pytest.raises(ProtocolError):
        protocol.response_payload_length(RequestKey.STAT, huge)


def test_takeover_requests_carry_the_pid_in_d() -> None:
    request = protocol.takeover_request(RequestKey.TAK1, 1234)
    assert request.encode() == b"1\0\0\0" + struct.pack("=I", 1234)
    assert protocol.request_payload_length(request.header) == 0
    with pytest.raises(ProtocolError):
        protocol.takeover_request(RequestKey.STAT, 1)


def test_challenges_encode_exactly_as_gdnsdctl_sends_them() -> None:
    challenges = [
        protocol.parse_acme_challenge("example.com", "0123456789012345678901234567890123456789012"),
        protocol.parse_acme_challenge(
            "www.Example.org.", "ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnop"
        ),
    ]
    request = protocol.challenge_request(challenges)
    assert request.header.count == 2
    assert request.header.d == len(GDNSDCTL_CHALLENGES) == 120
    assert request.payload == GDNSDCTL_CHALLENGES
    assert protocol.decode_challenges(2, GDNSDCTL_CHALLENGES) == challenges


# Names of 239 wire bytes (the most gdnsdctl takes) and 240.
LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 45])
TOO_LONG_NAME = LONGEST_NAME + "d"


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        # Debian's gdnsdctl 3.8.1 says exactly these (fatal:), naming the name after any prefix it dropped.
        ("ex..com", "0" * 43, "^Could not parse domainname 'ex..com'$"),
        ("_acme-challenge.a..b", "0" * 43, "^Could not parse domainname 'a..b'$"),
        ("example.com", "short", "^Payload for 'example.com' is not 43 bytes long$"),
        ("example.com", "!" * 43, "^Payload for 'example.com' has illegal base64url bytes$"),
        (TOO_LONG_NAME, "0" * 43, f"^Domainname '{TOO_LONG_NAME}' is too long for ACME DNS-01 challenges$"),
    ],
)
def test_bad_challenge_arguments_name_the_problem(name: str, payload: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.parse_acme_challenge(name, payload)


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        # As Debian's gdnsdctl 3.8.1 encodes them (captured): lowercased, a leading
        # "_acme-challenge." dropped (case-sensitively), "@" a label like any other.
        ("_acme-challenge.EXAMPLE.com", b"\x07example\x03com\x00"),
        ("_ACME-challenge.x.com", b"\x0f_acme-challenge\x01x\x03com\x00"),
        ("ex\\065mple.com.", b"\x07example\x03com\x00"),
        ("@", b"\x01@\x00"),
        (".", b"\x00"),
        (LONGEST_NAME, protocol.names.from_text(LONGEST_NAME + ".")),
    ],
)
def test_challenge_names_are_encoded_as_gdnsdctl_encodes_them(name: str, wire: bytes) -> None:
    challenge = protocol.parse_acme_challenge(name, "-" * 43)
    assert challenge.name == wire
    assert len(protocol.parse_acme_challenge(LONGEST_NAME, "-" * 43).name) == protocol.ACME_MAX_NAME


# What Debian's gdnsd 3.8.1 answered to REQ_TAK2 holding two batches: a.example.com and
# b.example.com added together 597 s before they expire, then c.example.com, 599 s
# (captured once: v = 2 batches, d = 190 bytes).
GDNSD_TAK2 = (
    b"x\x00U\x02\x02"
    b"\x0f\x01a\x07example\x03com\x000123456789012345678901234567890123456789012\x00"
    b"\x0f\x01b\x07example\x03com\x00-123456789012345678901234567890123456789012\x00"
    b"<\x00W\x02\x01"
    b"\x0f\x01c\x07example\x03com\x00_123456789012345678901234567890123456789012\x00"
)


@pytest.mark.skipif(sys.byteorder != "little", reason="the capture is in x86's host order")
def test_the_challenge_handoff_reads_and_writes_gdnsds_layout() -> None:
    batches = protocol.decode_challenge_handoff(2, GDNSD_TAK2)
    assert [(b.remaining, [(c.name, c.payload[:1]) for c in b.challenges]) for b in batches] == [
        (597, [(b"\x01a\x07example\x03com\x00", b"0"), (b"\x01b\x07example\x03com\x00", b"-")]),
        (599, [(b"\x01c\x07example\x03com\x00", b"_")]),
    ]
    assert protocol.encode_challenge_handoff(batches) == GDNSD_TAK2
    assert len(GDNSD_TAK2) == 190


def test_no_live_challenges_hand_off_as_nothing() -> None:
    assert protocol.encode_challenge_handoff([]) == b""
    assert protocol.decode_challenge_handoff(0, b"") == []


_ONE = b"\x0f\x01a\x07example\x03com\x00" + b"0" * 43  # a challenge without its NUL


@pytest.mark.parametrize(
    ("count", "data", "why"),
    [
        (1, GDNSD_TAK2, "more than the 1 batches"),
        (3, GDNSD_TAK2, "holds 2 batches, 3 announced"),
        (2, GDNSD_TAK2[:-1], "truncated"),
        (1, b"x\x00U", "truncated"),  # inside a batch's head
        (1, b"<\x00U\x02\x02" + _ONE + b"\x00", "1 challenges, 2 announced"),
        (1, b"<\x00U\x02\x01" + _ONE + b"X", "NUL-terminated"),
        (1, b"\x00\x00U\x02\x00", "a batch of 0 challenges"),
        (1, b"\x00\x00U\x02\x65", "a batch of 101 challenges"),  # more than one REQ_CHAL holds
    ],
)
def test_a_bad_challenge_handoff_is_refused(count: int, data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        protocol.decode_challenge_handoff(count, data)


def test_a_batch_gdnsd_could_not_read_is_never_handed_over() -> None:
    one = protocol.parse_acme_challenge("x", "-" * 43)
    with pytest.raises(ProtocolError):  # 0 s left would read as "a full TTL" to gdnsd
        protocol.encode_challenge_handoff([protocol.ChallengeBatch(0, (one,))])
    with pytest.raises(ProtocolError):
        protocol.encode_challenge_handoff([protocol.ChallengeBatch(10, ())])


def test_challenge_data_must_match_its_count() -> None:
    with pytest.raises(ProtocolError):
        protocol.decode_challenges(3, GDNSDCTL_CHALLENGES)
    with pytest.raises(ProtocolError):
        protocol.decode_challenges(1, GDNSDCTL_CHALLENGES)
    with pytest.raises(ProtocolError):
        protocol.decode_challenges(2, GDNSDCTL_CHALLENGES[:-1])


@pytest.mark.parametrize(
    ("count", "size"),
    [
        (0, 0),
        (0, 100),
        (1, 0),
        (101, 28400),
        (0x010000, 100_000_000),
        (0x010000, 10),
        (1, 28401),
    ],
)
def test_impossible_challenge_sizes_are_refused_before_reading_data(count: int, size: int) -> None:
    # gdnsd's bounds: 1-100 challenges, 1-28400 bytes; outside them it closes the connection.
    header = protocol.header_with_count(RequestKey.CHAL, count, size)
    with pytest.raises(ProtocolError, match="illegal sizes"):
        protocol.request_payload_length(header)
    reader = RequestReader()
    reader.feed(header.encode())
    with pytest.raises(ProtocolError):
        reader.next_request()


def test_sizes_within_gdnsds_bounds_are_read_and_then_judged() -> None:
    # gdnsd reads such data and answers RESP_FAIL (``decode_challenges`` fails), keeping the connection.
    header = protocol.header_with_count(RequestKey.CHAL, 1, 10)
    assert protocol.request_payload_length(header) == 10
    assert protocol.request_payload_length(protocol.header_with_count(RequestKey.CHAL, 100, 28400)) == 28400
    with pytest.raises(ProtocolError):
        protocol.decode_challenges(1, bytes(10))


def test_reader_frames_pipelined_and_split_requests() -> None:
    chal = protocol.challenge_request(protocol.decode_challenges(2, GDNSDCTL_CHALLENGES))
    stream = protocol.info_request((3, 8, 1)).encode() + chal.encode() + b"S" + bytes(7)
    reader = RequestReader()
    got: list[protocol.Request] = []
    for i in range(0, len(stream), 5):  # arrive in awkward 5-byte pieces
        reader.feed(stream[i : i + 5])
        for _ in range(10):
            request = reader.next_request()
            if request is None:
                break
            got.append(request)
    assert [r.key for r in got] == [RequestKey.INFO, RequestKey.CHAL, RequestKey.STAT]
    assert got[1].payload == GDNSDCTL_CHALLENGES
    assert reader.buffered == 0


def test_reader_refuses_a_flood_without_a_frame() -> None:
    reader = RequestReader()
    with pytest.raises(ProtocolError):
        reader.feed(bytes(protocol.MAX_BUFFERED + 1))


def test_stats_handoff_round_trips_64_bit_counters() -> None:
    message = protocol.stats_handoff([0, 1, 2**40, 2**64 - 1])
    assert message.key == protocol.PSH_SHAND
    assert message.header.d == 32
    assert protocol.decode_stats_handoff(message.payload) == [0, 1, 2**40, 2**64 - 1]
    with pytest.raises(ProtocolError):
        protocol.decode_stats_handoff(b"\0" * 7)


def test_random_bytes_never_crash_the_parsers() -> None:
    rng = random.Random(20240607)
    keys = b"ISEZXRCc12TAsDFLU?\0\xff"
    outcomes = {"request": 0, "error": 0}
    for _ in range(3000):
        size = rng.randrange(0, 200)
        data = bytearray(rng.randbytes(size))
        if data and rng.random() < 0.7:
            data[0] = rng.choice(keys)  # hit the interesting keys often
        reader = RequestReader()
        try:
            reader.feed(bytes(data))
            for _ in range(100):
                if reader.next_request() is None:
                    break
                outcomes["request"] += 1
        except ProtocolError:
            outcomes["error"] += 1
        with contextlib.suppress(ProtocolError):
            protocol.decode_challenges(rng.randrange(0, 4), bytes(data))
        if len(data) >= 8:
            header = protocol.decode_header(bytes(data[:8]))
            for key in RequestKey:
                try:
                    protocol.response_payload_length(key, header)
                except ProtocolError:
                    outcomes["error"] += 1
    # Both paths were exercised, so the loop really tested something.
    assert outcomes["request"] > 100
    assert outcomes["error"] > 10


def test_a_failure_reason_is_sent_only_as_far_as_asked() -> None:
    asking = protocol.request_with_reason(RequestKey.ZREL)
    assert asking.header == protocol.Header(RequestKey.ZREL, d=protocol.REASON_LIMIT)
    assert protocol.reason_limit(asking) == protocol.REASON_LIMIT
    # A ZREL as the spec writes it (d = 0), and any other request, asks for nothing.
    assert protocol.reason_limit(protocol.plain_request(RequestKey.ZREL)) == 0
    assert protocol.reason_limit(protocol.Request(protocol.Header(RequestKey.STOP, d=99))) == 0
    with pytest.raises(protocol.ProtocolError, match="cannot carry a failure's reason"):
        protocol.request_with_reason(RequestKey.STOP)
    bare = protocol.failure("zones/example.com:7: broken", 0)
    assert bare.encode() == protocol.response(ResponseKey.FAIL).encode()
    told = protocol.failure("zones/example.com:7: broken", 4096)
    assert told.header.d == len(told.payload) and told.payload == b"zones/example.com:7: broken"


def test_a_cut_reason_stays_whole_characters() -> None:
    cut = protocol.failure("zone 'exämple.com.': bad", 8)  # the cut falls inside the two-byte "ä"
    assert cut.payload == b"zone 'ex"
    cut = protocol.failure("zone 'exämple.com.': bad", 9)
    assert cut.payload == b"zone 'ex" and cut.header.d == 8


def test_a_fail_carries_data_only_for_a_request_that_asked() -> None:
    told = protocol.failure("why", 4096).header
    assert protocol.response_payload_length(RequestKey.ZREL, told, 4096) == 3
    # A client that did not ask reads no data whatever d says (d "carries no meaning").
    assert protocol.response_payload_length(RequestKey.ZREL, told) == 0
    with pytest.raises(protocol.ProtocolError, match="over the 2 asked for"):
        protocol.response_payload_length(RequestKey.ZREL, told, 2)
