"""Prepared answers: a response's sections as bytes, built once from a ``Decision``.

A response is ``header + question (copied from the query, so its case is
echoed) + tail [+ OPT]``. The tail (answer, authority and additional
sections, compressed against the question) is encoded here, once per
decision and question layout; the responder caches it (``answer_cache``)
and copies it into every response that needs it.
"""

from __future__ import annotations

import struct
from typing import Final

from pygdnsd.engine import lookup
from pygdnsd.engine.lookup import Decision, Record
from pygdnsd.engine.wire import SectionWriter
from pygdnsd.zones import model, names
from pygdnsd.zones.model import RRset

# A response minus its header's ID and RD bit, its question and OPT: a flat
# tuple laid out as the slot numbers below say. Attribute access would cost
# the per-packet path CPU, so the slots are numbered, not named.
#
# Flat, and only atoms, for the cyclic garbage collector: it stops tracking
# an exact tuple of atoms at the first collection that sees it, whereas a
# tuple holding tuples may be looked at before its items and so stays
# tracked into older generations (a tuple subclass, such as a NamedTuple,
# is never untracked). Cache entries built for first-seen questions then
# piled up there, and each gen-1/gen-2 collection walked thousands of them:
# pauses of 1-10 ms, most of pygdnsd's p99 latency. The caches' keys are
# flat tuples of atoms for the same reason (``answer_cache.tail_key``,
# ``Decision.signature``).
Prepared = tuple[int, int, int, int, int, int, bytes, int]

FLAGS: Final = 0  # the AA bit of header byte 2
RCODE: Final = 1
ANSWER_COUNT: Final = 2
AUTHORITY_COUNT: Final = 3
ADDITIONAL_COUNT: Final = 4
SCOPE: Final = 5  # the client-subnet scope to echo, set by dynamic answers
TAILS: Final = 6  # one tail per A/AAAA rotation, end to end (rotations have the same length)
ROTATIONS: Final = 7  # how many tails TAILS holds; 1: not rotated, every response alike

AA = 0x04

# A/AAAA RRsets are rotated from one response to the next, as gdnsd shuffles
# them: every record of a set comes first in turn. Rotations are prebuilt, up
# to this many (a bound on memory for absurdly large sets).
MAX_ROTATIONS = 256

_RR_FIXED = struct.Struct("!HHIH")


def prepared_answer(
    flags: int, rcode: int, counts: tuple[int, int, int], tails: list[bytes], scope: int = 0
) -> Prepared:
    """The flat tuple for these fields (``tails``: one per rotation)."""
    an, ns, ar = counts
    return (flags, rcode, an, ns, ar, scope, b"".join(tails), len(tails))


REFUSED = prepared_answer(0, lookup.RCODE_REFUSED, (0, 0, 0), [b""])
NOTIMP = prepared_answer(0, lookup.RCODE_NOTIMP, (0, 0, 0), [b""])


def rotated_tail(prepared: Prepared, rotation: int) -> bytes:
    """Rotation number ``rotation`` (modulo how many there are) of a prepared answer's tail."""
    tails, rotations = prepared[TAILS], prepared[ROTATIONS]
    if rotations == 1:
        return tails
    size = len(tails) // rotations
    at = rotation % rotations * size
    return tails[at : at + size]


def encode_decision(decision: Decision, qname: bytes, tail_at: int) -> tuple[Prepared, frozenset[bytes], bool]:
    """Encode a decision's sections, compressing against the question name.

    ``tail_at`` is where the tail starts in the message. Also returns every
    name the tail could compress against and whether it points into itself.
    A/AAAA RRsets in the answer are prebuilt in every rotation by reordering
    their encoded records (each record's owner is the same pointer).
    """
    known = {qname[pos:]: 12 + pos for pos in names.label_offsets(qname)[:-1]}
    writer = SectionWriter(tail_at, known)
    rotating: list[tuple[int, int, list[bytes]]] = []  # (start, end, records) in writer.out
    for section in (decision.answer, decision.authority, decision.additional):
        for record in section:
            owner: bytes | int = 12 if record.owner == lookup.QNAME else record.owner
            rrset = record.rrset
            start = len(writer.out)
            chunks = []
            for rdata in rrset.rdatas:
                before = len(writer.out)
                writer.record(owner, rrset.rtype, model.CLASS_IN, rrset.ttl, rdata)
                chunks.append(bytes(writer.out[before:]))
                if isinstance(owner, bytes):
                    # Later records of the set point at the first copy of the owner.
                    owner = writer.known.get(owner, owner)
            if (
                section is decision.answer
                and rrset.rtype in (model.A, model.AAAA)
                and len(chunks) > 1
                and chunks[0][0] >= 0xC0  # the owner is a pointer in every record
            ):
                rotating.append((start, len(writer.out), chunks))
    tail = writer.getvalue()
    tails = [tail]
    if rotating:
        rotations = min(max(len(chunks) for _, _, chunks in rotating), MAX_ROTATIONS)
        tails = [_rotation(tail, rotating, turn) for turn in range(rotations)]
    counts = (
        _record_count(decision.answer),
        _record_count(decision.authority),
        _record_count(decision.additional),
    )
    flags = AA if decision.authoritative else 0
    return prepared_answer(flags, decision.rcode, counts, tails), frozenset(writer.wanted), writer.internal


def plain_answer(rrset: RRset) -> Prepared:
    """The tail answering with ``rrset`` alone, owner a pointer to the question (rotated as usual)."""
    fixed = _RR_FIXED.pack
    chunks = [b"\xc0\x0c" + fixed(rrset.rtype, model.CLASS_IN, rrset.ttl, len(rdata)) + rdata for rdata in rrset.rdatas]
    tail = b"".join(chunks)
    tails = [tail]
    if rrset.rtype in (model.A, model.AAAA) and len(chunks) > 1:
        rotating = [(0, len(tail), chunks)]
        tails = [_rotation(tail, rotating, turn) for turn in range(min(len(chunks), MAX_ROTATIONS))]
    return prepared_answer(AA, lookup.RCODE_NOERROR, (len(chunks), 0, 0), tails)


def chaos_answer(text: bytes) -> Prepared:
    """The answer to any CHAOS-class question: one TXT record holding ``text`` (``chaos_response``)."""
    writer = SectionWriter(0, {})
    writer.pointer(12)
    writer.out += _RR_FIXED.pack(model.TXT, model.CLASS_CH, 0, len(text) + 1)
    writer.out += bytes((len(text),)) + text
    return prepared_answer(0, lookup.RCODE_NOERROR, (1, 0, 0), [writer.getvalue()])


def _rotation(tail: bytes, rotating: list[tuple[int, int, list[bytes]]], turn: int) -> bytes:
    """``tail`` with each rotating RRset's records shifted ``turn`` places."""
    parts = []
    done = 0
    for start, end, chunks in rotating:
        shift = turn % len(chunks)
        parts.append(tail[done:start])
        parts.extend(chunks[shift:] + chunks[:shift])
        done = end
    parts.append(tail[done:])
    return b"".join(parts)


def _record_count(section: tuple[Record, ...]) -> int:
    return sum(len(record.rrset.rdatas) for record in section)
