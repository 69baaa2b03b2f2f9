"""The fuzz tools themselves: the generator is reproducible and hostile, the strict parser strict."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from dnslib import EDNS0, QTYPE, RR, DNSRecord
from dnslib import A as A_RDATA

from fuzz.mutator import A, PacketFuzzer, Question, header, opt_record, wire_name
from fuzz.strict import MalformedMessage, parse_message

QUESTIONS = [Question(wire_name("www.example.com"), A), Question(wire_name("example.com"), 6)]


def _first_labels_over_63(packet: bytes) -> bool:
    pos = 12
    while pos < len(packet) and packet[pos]:
        if packet[pos] > 63:
            return True
        pos += packet[pos] + 1
    return False


def _qname_length(packet: bytes) -> int:
    pos = 12
    while packet[pos]:
        pos += packet[pos] + 1
    return pos + 1 - 12


def test_same_seed_same_packets_other_seed_others() -> None:
    first = list(PacketFuzzer(42, QUESTIONS).cases(2000))
    again = list(PacketFuzzer(42, QUESTIONS).cases(2000))
    other = list(PacketFuzzer(43, QUESTIONS).cases(2000))
    assert first == again
    assert first != other


def test_stream_covers_every_kind_of_hostile_packet() -> None:
    cases = list(PacketFuzzer(7, QUESTIONS).cases(20_000))
    kinds = Counter(case.kind for case in cases)
    for kind in ("valid", "random bytes", "mutated", "short header", "huge counts", "pointer loop",
                 "pointer past end", "label > 63", "name > 255", "bad OPT", "random options",
                 "odd header", "odd class/type", "extra records"):
        assert kinds[kind] > 100, kind
    by_kind: dict[str, list[bytes]] = {}
    for kind, packet in cases:
        by_kind.setdefault(kind, []).append(packet)
    assert all(len(p) < 12 for p in by_kind["short header"])
    assert any(len(p) == 0 for p in by_kind["random bytes"])
    assert max(len(p) for p in by_kind["random bytes"]) > 500
    assert any(struct.unpack_from("!H", p, 4)[0] == 0xFFFF for p in by_kind["huge counts"])
    assert all(b"\xc0" in p[12:] for p in by_kind["pointer loop"])
    assert all(_first_labels_over_63(p) for p in by_kind["label > 63"])
    lengths = Counter(_qname_length(p) > 255 for p in by_kind["name > 255"])
    # Mostly over the limit, some right at it (254, 255 bytes).
    assert lengths[True] > lengths[False] > 0
    assert any(p[2] & 0x80 for p in by_kind["odd header"])
    assert len({(p[2] >> 3) & 0x0F for p in by_kind["odd header"]}) == 16


def test_valid_queries_parse() -> None:
    fuzzer = PacketFuzzer(3, QUESTIONS)
    for _ in range(500):
        packet = fuzzer.valid_query()
        message = parse_message(packet)
        assert len(message.question) == 1
        DNSRecord.parse(packet)


def _response() -> bytes:
    record = DNSRecord.question("www.example.com", "A").reply()
    record.add_answer(RR("www.example.com", QTYPE.A, rdata=A_RDATA("192.0.2.10"), ttl=300))
    record.add_ar(EDNS0(udp_len=1024))
    return bytes(record.pack())


def test_strict_parser_accepts_a_normal_compressed_response() -> None:
    message = parse_message(_response())
    assert message.qr
    assert [r.rdata for r in message.answer] == [bytes((192, 0, 2, 10))]
    assert message.answer[0].owner == wire_name("www.example.com")
    assert message.opt is not None


QNAME = wire_name("www.example.com")
QTAIL = struct.pack("!HH", A, 1)
A_RR = struct.pack("!HHHIH", 0xC00C, A, 1, 300, 4) + bytes(4)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("short header", b"\x00" * 11),
        ("answer count larger than the records", header(1, 0x8000, 1, 2) + QNAME + QTAIL + A_RR),
        ("bytes after the last record", header(1, 0x8000, 1, 1) + QNAME + QTAIL + A_RR + b"\x00"),
        ("pointer to itself", header(1, 0x8000) + b"\xc0\x0c" + QTAIL),
        ("pointer loop of two", header(1, 0x8000) + b"\xc0\x0e\xc0\x0c" + QTAIL),
        ("owner pointing at itself", header(1, 0x8000, 1, 1) + QNAME + QTAIL + b"\xc0\x21" + A_RR[2:]),
        ("forward pointer", header(1, 0x8000) + b"\xc0\x12" + QTAIL + QNAME),
        ("pointer past the end", header(1, 0x8000) + b"\xff\xff" + QTAIL),
        ("label longer than 63", header(1, 0x8000) + b"\x40" + b"a" * 64 + b"\x00" + QTAIL),
        ("name longer than 255", header(1, 0x8000) + (b"\x3f" + b"a" * 63) * 4 + b"\x00" + QTAIL),
        ("rdata past the end", header(1, 0x8000, 1, 1) + QNAME + QTAIL + A_RR[:-1]),
        ("A rdata of 5 bytes", header(1, 0x8000, 1, 1) + QNAME + QTAIL + A_RR[:-6] + b"\x00\x05" + bytes(5)),
        ("two OPT records", header(1, 0x8000, 1, 0, 0, 2) + QNAME + QTAIL + opt_record() + opt_record()),
        ("OPT in the answer", header(1, 0x8000, 1, 1) + QNAME + QTAIL + opt_record()),
        ("OPT not owned by root", header(1, 0x8000, 1, 0, 0, 1) + QNAME + QTAIL + opt_record(owner=b"\xc0\x0c")),
        ("option past the OPT rdata", header(1, 0x8000, 1, 0, 0, 1) + QNAME + QTAIL
         + opt_record(options=b"\x00\x0a\x00\x08abc")),
    ],
)
def test_strict_parser_rejects(label: str, data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_message(data)
