"""A seeded, reproducible generator of hostile DNS queries.

Every packet comes from one ``random.Random(seed)``: the same seed gives the
same packets in the same order, so a failure is replayed by its seed and
index. Packets are a mix of

* valid queries for names and types of the test zones (with and without
  EDNS, with every option we know),
* those queries after 1-3 random mutations (bit flips, truncation,
  extension, spliced bytes),
* hand-shaped hostile packets: short headers, huge counts, compression
  pointers that loop or point past the end, labels > 63, names > 255,
  OPT records malformed in every field, QR set, odd opcodes/classes/types,
* pure random bytes of length 0..600.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, NAPTR, OPT, CAA = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 41, 257,
)
ANY, AXFR, IXFR, MAILB, MAILA, TSIG, TKEY = 255, 252, 251, 253, 254, 250, 249
IN, CH, HS, NONE_CLASS, ANY_CLASS = 1, 3, 4, 254, 255
NSID, ECS, COOKIE, KEEPALIVE, PADDING = 3, 8, 10, 11, 12

ODD_TYPES = (0, OPT, TSIG, TKEY, IXFR, AXFR, MAILB, MAILA, ANY, 256, 32768, 65280, 65535)
ODD_CLASSES = (0, 2, CH, HS, NONE_CLASS, ANY_CLASS, 256, 65535)
COMMON_TYPES = (A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, NAPTR, CAA, ANY)
HEADER = struct.Struct("!6H")
MAX_RANDOM_LENGTH = 600


class FuzzCase(NamedTuple):
    """One packet and how it was made (for failure messages)."""

    kind: str
    packet: bytes


@dataclass(frozen=True)
class Question:
    name: bytes  # wire format, as it will be sent (case kept)
    qtype: int
    qclass: int = IN


def wire_name(text: str) -> bytes:
    labels = [label.encode() for label in text.rstrip(".").split(".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def option(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data) & 0xFFFF) + data


def opt_record(
    udp: int = 4096, version: int = 0, flags: int = 0, ext_rcode: int = 0,
    options: bytes = b"", owner: bytes = b"\x00", rdlength: int | None = None,
) -> bytes:
    ttl = ((ext_rcode & 0xFF) << 24) | ((version & 0xFF) << 16) | (flags & 0xFFFF)
    length = len(options) if rdlength is None else rdlength
    return owner + struct.pack("!HHIH", OPT, udp & 0xFFFF, ttl, length & 0xFFFF) + options


def header(qid: int, flags: int = 0, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return HEADER.pack(qid & 0xFFFF, flags & 0xFFFF, qd & 0xFFFF, an & 0xFFFF, ns & 0xFFFF, ar & 0xFFFF)


def questions_from_zones(nodes: Iterable[tuple[bytes, Iterable[int]]]) -> list[Question]:
    """Questions for every (name, its types) plus types the name lacks and names below it."""
    out = []
    for name, types in nodes:
        for qtype in sorted(set(types) | {A, AAAA, MX, ANY, TXT}):
            out.append(Question(name, qtype))
        out.append(Question(b"\x07missing" + name, A))
        out.append(Question(b"\x01x\x01y" + name, TXT))
    return out


class PacketFuzzer:
    """Yields ``FuzzCase``s; reproducible from ``seed`` and the question list."""

    def __init__(self, seed: int, questions: list[Question]) -> None:
        if not questions:
            raise ValueError("the fuzzer needs at least one valid question to start from")
        self.seed = seed
        self.rng = random.Random(seed)
        self.questions = questions
        self._builders: list[tuple[str, Callable[[], bytes]]] = [
            ("short header", self.short_header),
            ("huge counts", self.huge_counts),
            ("pointer loop", self.pointer_loop),
            ("pointer past end", self.pointer_past_end),
            ("pointer forward", self.pointer_forward),
            ("label > 63", self.long_label),
            ("name > 255", self.long_name),
            ("bad OPT", self.bad_opt),
            ("random options", self.random_options),
            ("odd header", self.odd_header),
            ("odd class/type", self.odd_class_type),
            ("extra records", self.extra_records),
        ]
        self._mutations: list[Callable[[bytearray], None]] = [
            self._flip_bits, self._set_bytes, self._truncate, self._extend,
            self._splice, self._set_count, self._insert_pointer,
        ]

    # -- the stream -----------------------------------------------------------

    def cases(self, count: int) -> Iterator[FuzzCase]:
        for _ in range(count):
            yield self.case()

    def case(self) -> FuzzCase:
        roll = self.rng.random()
        if roll < 0.12:
            return FuzzCase("valid", self.valid_query())
        if roll < 0.22:
            return FuzzCase("random bytes", self.random_bytes())
        if roll < 0.55:
            return FuzzCase("mutated", self.mutated())
        kind, build = self.rng.choice(self._builders)
        return FuzzCase(kind, build())

    # -- valid queries ----------------------------------------------------------

    def _qid(self) -> int:
        return self.rng.getrandbits(16)

    def _question(self) -> Question:
        return self.rng.choice(self.questions)

    def _mixed_case(self, name: bytes) -> bytes:
        if self.rng.random() < 0.7:
            return name
        return bytes(b ^ 0x20 if 97 <= b <= 122 and self.rng.random() < 0.5 else b for b in name)

    def _question_bytes(self, q: Question | None = None) -> bytes:
        q = q or self._question()
        return self._mixed_case(q.name) + struct.pack("!HH", q.qtype, q.qclass)

    def valid_options(self) -> bytes:
        rng = self.rng
        parts = []
        if rng.random() < 0.3:
            parts.append(option(NSID))
        if rng.random() < 0.3:
            size = rng.choice((8, 16, 24, 40))
            parts.append(option(COOKIE, rng.randbytes(size)))
        if rng.random() < 0.3:
            if rng.random() < 0.5:
                prefix = rng.randint(0, 32)
                address = bytearray(rng.randbytes((prefix + 7) // 8))
                family = 1
            else:
                prefix = rng.randint(0, 128)
                address = bytearray(rng.randbytes((prefix + 7) // 8))
                family = 2
            if address and prefix % 8:
                address[-1] &= (0xFF << (8 - prefix % 8)) & 0xFF
            parts.append(option(ECS, struct.pack("!HBB", family, prefix, 0) + bytes(address)))
        if rng.random() < 0.2:
            parts.append(option(KEEPALIVE))
        if rng.random() < 0.2:
            parts.append(option(PADDING, bytes(rng.randint(0, 64))))
        rng.shuffle(parts)
        return b"".join(parts)

    def valid_query(self) -> bytes:
        rng = self.rng
        flags = 0x0100 if rng.random() < 0.5 else 0
        with_edns = rng.random() < 0.6
        edns = b""
        if with_edns:
            do = 0x8000 if rng.random() < 0.3 else 0
            edns = opt_record(rng.choice((0, 512, 1232, 4096, 65535)), flags=do, options=self.valid_options())
        return header(self._qid(), flags, ar=1 if with_edns else 0) + self._question_bytes() + edns

    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, MAX_RANDOM_LENGTH))

    # -- mutations of valid queries ---------------------------------------------

    def mutated(self) -> bytes:
        packet = bytearray(self.valid_query())
        for _ in range(self.rng.randint(1, 3)):
            self.rng.choice(self._mutations)(packet)
        return bytes(packet)

    def _flip_bits(self, packet: bytearray) -> None:
        if packet:
            for _ in range(self.rng.randint(1, 8)):
                packet[self.rng.randrange(len(packet))] ^= 1 << self.rng.randrange(8)

    def _set_bytes(self, packet: bytearray) -> None:
        if packet:
            for _ in range(self.rng.randint(1, 4)):
                packet[self.rng.randrange(len(packet))] = self.rng.choice((0, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF, self.rng.getrandbits(8)))

    def _truncate(self, packet: bytearray) -> None:
        del packet[self.rng.randint(0, len(packet)) :]

    def _extend(self, packet: bytearray) -> None:
        packet += self.rng.randbytes(self.rng.randint(1, 64))

    def _splice(self, packet: bytearray) -> None:
        at = self.rng.randint(0, len(packet))
        packet[at:at] = self.rng.randbytes(self.rng.randint(1, 16))

    def _set_count(self, packet: bytearray) -> None:
        if len(packet) >= 12:
            field = self.rng.randrange(4)
            value = self.rng.choice((0, 1, 2, 0x7FFF, 0xFFFF, self.rng.getrandbits(16)))
            packet[4 + 2 * field : 6 + 2 * field] = value.to_bytes(2, "big")

    def _insert_pointer(self, packet: bytearray) -> None:
        if len(packet) > 13:
            at = self.rng.randrange(12, len(packet) - 1)
            target = self.rng.choice((at, 12, len(packet), 0x3FFF, self.rng.getrandbits(14)))
            packet[at : at + 2] = (0xC000 | target).to_bytes(2, "big")

    # -- hand-shaped hostile packets ----------------------------------------------

    def short_header(self) -> bytes:
        return self.valid_query()[: self.rng.randint(0, 11)]

    def huge_counts(self) -> bytes:
        rng = self.rng
        counts = [rng.choice((0, 1, 2, 100, 0x7FFF, 0xFFFF)) for _ in range(4)]
        body = self._question_bytes()
        if rng.random() < 0.5:
            body += opt_record()
        return header(self._qid(), 0, *counts) + body

    def _edns_tail(self) -> tuple[int, bytes]:
        if self.rng.random() < 0.5:
            return 1, opt_record(options=self.valid_options())
        return 0, b""

    def pointer_loop(self) -> bytes:
        rng = self.rng
        qtc = struct.pack("!HH", rng.choice(COMMON_TYPES), IN)
        shape = rng.randrange(4)
        if shape == 0:  # the qname is a pointer to itself
            qname = b"\xc0\x0c"
        elif shape == 1:  # a label, then a pointer back to the start of the name
            qname = b"\x03www\xc0\x0c"
        elif shape == 2:  # two pointers pointing at each other
            qname = b"\xc0\x0e\xc0\x0c"
        else:  # a pointer into the header
            qname = b"\x01a" + struct.pack("!H", 0xC000 | rng.randrange(12))
        ar, edns = self._edns_tail()
        packet = header(self._qid(), 0, ar=ar) + qname + qtc + edns
        if rng.random() < 0.3:
            # A valid question, then an OPT whose owner is a self-pointer.
            question = self._question_bytes()
            at = 12 + len(question)
            owner = struct.pack("!H", 0xC000 | at)
            packet = header(self._qid(), 0, ar=1) + question + opt_record(owner=owner)
        return packet

    def pointer_past_end(self) -> bytes:
        rng = self.rng
        question = self._question_bytes()
        target = rng.choice((0x3FFF, 12 + len(question) + 20, rng.randrange(0x4000)))
        pointer = struct.pack("!H", 0xC000 | target)
        where = rng.randrange(3)
        if where == 0:
            qname = pointer
            return header(self._qid()) + qname + struct.pack("!HH", A, IN)
        if where == 1:  # the last byte of the packet is half a pointer
            return header(self._qid()) + question[:-4] + b"\xc0"
        return header(self._qid(), ar=1) + question + opt_record(owner=pointer)

    def pointer_forward(self) -> bytes:
        """A qname that points forward to a label later in the packet."""
        question = b"\xc0\x12" + struct.pack("!HH", A, IN) + b"\x03www\x07example\x03com\x00"
        return header(self._qid()) + question

    def long_label(self) -> bytes:
        rng = self.rng
        length = rng.choice((64, 65, 127, 128, 191, 255, rng.randint(64, 255)))
        # The declared length may or may not be backed by that many bytes.
        data = bytes(rng.choice((length, rng.randint(0, length)))) if rng.random() < 0.5 else b"a" * length
        qname = b"\x03www" + bytes((length,)) + data + b"\x07example\x03com\x00"
        ar, edns = self._edns_tail()
        return header(self._qid(), 0, ar=ar) + qname + struct.pack("!HH", A, IN) + edns

    def long_name(self) -> bytes:
        rng = self.rng
        label_size = rng.choice((1, 10, 63))
        total = rng.choice((254, 255, 256, 257, 300, 600))
        labels = b""
        suffix = b"\x07example\x03com\x00"
        while len(labels) + len(suffix) < total:
            labels += bytes((label_size,)) + b"x" * label_size
        ar, edns = self._edns_tail()
        return header(self._qid(), 0, ar=ar) + labels + suffix + struct.pack("!HH", A, IN) + edns

    def bad_opt(self) -> bytes:
        """A valid question with one OPT record broken in one (or more) fields."""
        rng = self.rng
        question = self._question_bytes()
        kwargs: dict[str, object] = {}
        options = self.valid_options()
        broken = rng.sample(
            ["owner", "udp", "version", "ext_rcode", "flags", "rdlength", "option", "cookie", "ecs", "nsid", "count"],
            rng.randint(1, 3),
        )
        ar = 1
        extra = b""
        for field in broken:
            if field == "owner":
                kwargs["owner"] = rng.choice((b"\x01a\x00", b"\xc0\x0c", b"\x03www\x00", b"\x00\x00"))
            elif field == "udp":
                kwargs["udp"] = rng.choice((0, 1, 511, 512, 513, 65535))
            elif field == "version":
                kwargs["version"] = rng.choice((1, 2, 255))
            elif field == "ext_rcode":
                kwargs["ext_rcode"] = rng.randint(1, 255)
            elif field == "flags":
                kwargs["flags"] = rng.getrandbits(16)
            elif field == "rdlength":
                kwargs["rdlength"] = rng.choice((len(options) + 1, len(options) + 100, 0xFFFF, max(0, len(options) - 1)))
            elif field == "option":
                options += rng.choice((
                    b"\x00",  # a truncated option header
                    b"\x00\x03\x00",
                    struct.pack("!HH", rng.getrandbits(16), 50) + b"short",  # length past the end
                    struct.pack("!HH", rng.getrandbits(16), 0xFFFF),
                ))
            elif field == "cookie":
                size = rng.choice((0, 1, 7, 9, 15, 41, 48, 100))
                options += option(COOKIE, rng.randbytes(size))
                if rng.random() < 0.3:
                    options += option(COOKIE, rng.randbytes(8))  # a second cookie
            elif field == "ecs":
                family = rng.choice((0, 1, 2, 3, 0xFFFF))
                source = rng.choice((0, 8, 24, 32, 33, 128, 129, 255))
                scope = rng.choice((0, 0, 1, 255))
                address = rng.randbytes(rng.choice((0, 1, 3, 4, 5, 16, 17)))
                data = struct.pack("!HBB", family, source, scope) + address
                options += option(ECS, data[: rng.choice((len(data), rng.randint(0, len(data))))])
            elif field == "nsid":
                options += option(NSID, rng.randbytes(rng.randint(1, 8)))
            elif field == "count":
                if rng.random() < 0.5:
                    extra = opt_record()  # two OPT records
                    ar = 2
                else:
                    ar = rng.choice((0, 3, 0xFFFF))
        record = opt_record(options=options, **kwargs)  # type: ignore[arg-type]
        if rng.random() < 0.2:
            record = record[: rng.randint(0, len(record))]
        if rng.random() < 0.15:
            # The OPT record in the answer or authority section instead.
            an, ns = (1, 0) if rng.random() < 0.5 else (0, 1)
            return header(self._qid(), 0, 1, an, ns, 0) + question + record + extra
        return header(self._qid(), 0, ar=ar) + question + record + extra

    def random_options(self) -> bytes:
        rng = self.rng
        options = b""
        for _ in range(rng.randint(1, 8)):
            code = rng.choice((0, NSID, ECS, COOKIE, KEEPALIVE, PADDING, 13, 14, 15, 65001, 65535, rng.getrandbits(16)))
            size = rng.choice((0, 1, 2, 4, 8, 16, 40, rng.randint(0, 300)))
            options += option(code, rng.randbytes(size))
        if rng.random() < 0.3:
            options = options[: rng.randint(0, len(options))]
        do = rng.choice((0, 0x8000))
        return header(self._qid(), 0, ar=1) + self._question_bytes() + opt_record(rng.getrandbits(16), flags=do, options=options)

    def odd_header(self) -> bytes:
        rng = self.rng
        qr = 0x8000 if rng.random() < 0.3 else 0
        opcode = rng.randrange(16) << 11
        # AA, TC, RD, RA, Z, AD, CD and rcode bits: anything.
        rest = rng.getrandbits(11)
        qd = rng.choice((0, 1, 1, 1, 2, 3))
        questions = b"".join(self._question_bytes() for _ in range(max(qd, rng.randint(0, 1))))
        ar, edns = self._edns_tail()
        return header(self._qid(), qr | opcode | rest, qd, 0, 0, ar) + questions + edns

    def odd_class_type(self) -> bytes:
        rng = self.rng
        q = self._question()
        qtype = rng.choice((*ODD_TYPES, rng.getrandbits(16)))
        qclass = rng.choice((*ODD_CLASSES, IN, rng.getrandbits(16)))
        ar, edns = self._edns_tail()
        return header(self._qid(), 0, ar=ar) + self._question_bytes(Question(q.name, qtype, qclass)) + edns

    def extra_records(self) -> bytes:
        """Records in the answer/authority/additional sections of a query, some broken."""
        rng = self.rng
        records = b""
        counts = [0, 0, 0]
        for _ in range(rng.randint(1, 5)):
            owner = rng.choice((b"\x00", b"\xc0\x0c", self._question().name, b"\x01a\xc0\x0c"))
            rtype = rng.choice((A, NS, TXT, OPT, TSIG, rng.getrandbits(16)))
            rdata = rng.randbytes(rng.randint(0, 40))
            length = len(rdata) if rng.random() < 0.8 else rng.getrandbits(16)
            records += owner + struct.pack("!HHIH", rtype, rng.choice((IN, CH, 512, 4096)), rng.getrandbits(32), length) + rdata
            counts[rng.randrange(3)] += 1
        return header(self._qid(), 0, 1, *counts) + self._question_bytes() + records


def tcp_frame(packet: bytes) -> bytes:
    return len(packet).to_bytes(2, "big") + packet
