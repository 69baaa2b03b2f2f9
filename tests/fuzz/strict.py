"""A strict DNS message parser for checking the server's responses.

Stricter than dnslib on purpose: the header counts must match the sections
exactly, with no bytes left over; compression pointers must point backwards
(so they cannot loop); labels are at most 63 bytes and names at most 255;
every record's rdata must fill its rdlength exactly for the types whose
layout we know; at most one OPT record, in the additional section, owned by
the root, with options that fill its rdata exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, NAPTR, OPT, CAA = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 41, 257,
)
MAX_NAME = 255
MAX_LABEL = 63
_HEADER = struct.Struct("!6H")
_RR = struct.Struct("!HHIH")


class MalformedMessage(ValueError):
    """The bytes are not a well-formed DNS message; the message says where."""


@dataclass(frozen=True)
class Record:
    owner: bytes  # uncompressed wire name
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes  # as on the wire (names in it may be compressed)


@dataclass(frozen=True)
class Message:
    qid: int
    flags: int
    question: tuple[tuple[bytes, int, int], ...]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    question_end: int  # offset just past the question section
    label_spans: tuple[tuple[int, int], ...]  # (start, end) of every label read, pointers followed

    @property
    def qr(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def rcode(self) -> int:
        return self.flags & 0x0F

    @property
    def opt(self) -> Record | None:
        for record in self.additional:
            if record.rtype == OPT:
                return record
        return None


def read_name(
    data: bytes, pos: int, end: int | None = None, spans: list[tuple[int, int]] | None = None
) -> tuple[bytes, int]:
    """The name at ``pos`` (uncompressed) and the offset just past it where it started.

    ``end`` bounds where the name's own bytes may lie (an rdata's end);
    pointers may target anything earlier in the message. Each label's
    (start, end) offsets are appended to ``spans`` when given.
    """
    limit = len(data) if end is None else end
    labels = []
    length_total = 1
    after: int | None = None
    # A pointer must point before the name part it interrupts: no loops possible.
    floor = pos
    while True:
        if pos >= limit:
            raise MalformedMessage(f"name runs past the end at offset {pos}")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 2 > limit:
                raise MalformedMessage(f"half a compression pointer at offset {pos}")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= floor:
                raise MalformedMessage(f"compression pointer at {pos} does not point backwards ({target})")
            if after is None:
                after = pos + 2
            pos = floor = target
            limit = len(data)
            continue
        if kind:
            raise MalformedMessage(f"label type {kind:#x} at offset {pos}")
        if length == 0:
            break
        if pos + 1 + length > limit:
            raise MalformedMessage(f"label at {pos} runs past the end")
        labels.append(data[pos + 1 : pos + 1 + length])
        if spans is not None:
            spans.append((pos + 1, pos + 1 + length))
        length_total += length + 1
        if length_total > MAX_NAME:
            raise MalformedMessage(f"name longer than {MAX_NAME} bytes near offset {pos}")
        pos += length + 1
    if after is None:
        after = pos + 1
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00", after


def _check_rdata(data: bytes, rtype: int, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    """Names and fields inside the rdata of the types we serve must fill it exactly."""
    size = end - start
    pos = start
    if rtype == A:
        if size != 4:
            raise MalformedMessage(f"A rdata of {size} bytes at {start}")
        return
    if rtype == AAAA:
        if size != 16:
            raise MalformedMessage(f"AAAA rdata of {size} bytes at {start}")
        return
    if rtype in (NS, CNAME, PTR):
        _, pos = read_name(data, pos, end, spans)
    elif rtype == MX:
        _, pos = read_name(data, pos + 2, end, spans)
    elif rtype == SRV:
        _, pos = read_name(data, pos + 6, end, spans)
    elif rtype == SOA:
        _, pos = read_name(data, pos, end, spans)
        _, pos = read_name(data, pos, end, spans)
        pos += 20
    elif rtype == TXT:
        if size == 0:
            raise MalformedMessage(f"empty TXT rdata at {start}")
        while pos < end:
            pos += 1 + data[pos]
    elif rtype == NAPTR:
        pos += 4
        for _ in range(3):
            if pos >= end:
                raise MalformedMessage(f"NAPTR rdata too short at {start}")
            pos += 1 + data[pos]
        _, pos = read_name(data, pos, end, spans)
    elif rtype == OPT:
        while pos < end:
            if pos + 4 > end:
                raise MalformedMessage(f"truncated EDNS option header at {pos}")
            length = (data[pos + 2] << 8) | data[pos + 3]
            pos += 4 + length
    else:
        return
    if pos != end:
        raise MalformedMessage(f"type {rtype} rdata at {start}: fields end at {pos}, rdlength says {end}")


def _read_record(data: bytes, pos: int, spans: list[tuple[int, int]]) -> tuple[Record, int]:
    owner, pos = read_name(data, pos, None, spans)
    if pos + _RR.size > len(data):
        raise MalformedMessage(f"record fixed fields run past the end at {pos}")
    rtype, rclass, ttl, rdlength = _RR.unpack_from(data, pos)
    pos += _RR.size
    end = pos + rdlength
    if end > len(data):
        raise MalformedMessage(f"rdata of {rdlength} bytes at {pos} runs past the end ({len(data)})")
    _check_rdata(data, rtype, pos, end, spans)
    return Record(owner, rtype, rclass, ttl, data[pos:end]), end


def parse_message(data: bytes) -> Message:
    """Parse ``data`` as one complete DNS message, or raise MalformedMessage."""
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"{len(data)} bytes: shorter than a header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    pos = _HEADER.size
    question = []
    spans: list[tuple[int, int]] = []
    for _ in range(qd):
        name, pos = read_name(data, pos, None, spans)
        if pos + 4 > len(data):
            raise MalformedMessage(f"question type/class run past the end at {pos}")
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        question.append((name, qtype, qclass))
    question_end = pos
    sections: list[tuple[Record, ...]] = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            record, pos = _read_record(data, pos, spans)
            records.append(record)
        sections.append(tuple(records))
    if pos != len(data):
        raise MalformedMessage(f"{len(data) - pos} bytes after the last record (counts {qd}/{an}/{ns}/{ar})")
    answer, authority, additional = sections
    for record in (*answer, *authority):
        if record.rtype == OPT:
            raise MalformedMessage("OPT record outside the additional section")
    opts = [record for record in additional if record.rtype == OPT]
    if len(opts) > 1:
        raise MalformedMessage(f"{len(opts)} OPT records")
    if opts and opts[0].owner != b"\x00":
        raise MalformedMessage("OPT record not owned by the root")
    return Message(qid, flags, tuple(question), answer, authority, additional, question_end, tuple(spans))
