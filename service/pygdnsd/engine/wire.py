"""Writing response sections: resource records with name compression.

Answers are built once per (decision, question layout) and cached, so this
code is off the hot path; it favours clarity. Compression targets are the
question name (whose suffixes sit at known offsets) and names written
earlier in the same message, as RFC 1035 4.1.4 describes, up to gdnsd's
16. A tail built for one question and shared with another (``answer_cache``)
may then compress a little better or worse than gdnsd would for the second;
its pointers are valid either way.
"""

from __future__ import annotations

import struct

from pygdnsd.zones import model

# Types whose rdata names gdnsd compresses (docs/gdnsd-behaviour.md): NS, CNAME,
# MX, SOA. PTR, SRV and NAPTR targets are written in full.
_NAME_AT_START = frozenset({model.NS, model.CNAME, model.DNAME})
COMPRESSED_TYPES = _NAME_AT_START | {model.MX, model.SOA}

_RR_HEADER = struct.Struct("!HHIH")

# gdnsd remembers at most this many names (question suffixes included) to
# compress later names against; past that, a name's suffixes are written but
# not remembered. Its suite checks the resulting sizes (003complex/008compress).
MAX_TARGETS = 16


class SectionWriter:
    """Appends resource records to a message whose question is already laid out.

    ``known`` maps lowercase wire names to the absolute offset where that name
    (or a pointer resolving to it) starts in the message; ``start`` is the
    absolute offset of the first byte this writer emits.
    """

    def __init__(self, start: int, known: dict[bytes, int]) -> None:
        self.start = start
        self.known = dict(known)
        self.out = bytearray()
        # Every suffix of every compressible name written: what the output can
        # depend on besides the records themselves (see Responder's tail sharing).
        self.wanted: set[bytes] = set()
        # Whether a pointer targets this writer's own output: then the bytes
        # depend on where the output starts, i.e. on the question's length.
        self.internal = False

    def _offset(self) -> int:
        return self.start + len(self.out)

    def name(self, name: bytes, compress: bool = True) -> None:
        """Write ``name``, pointing at the longest suffix already in the message."""
        if compress:
            pos = 0
            while name[pos]:
                self.wanted.add(name[pos:])
                pos += name[pos] + 1
        pos = 0
        while name[pos]:
            suffix = name[pos:]
            if compress:
                target = self.known.get(suffix)
                if target is not None:
                    self.pointer(target)
                    return
            here = self._offset()
            if here < 0x4000 and len(self.known) < MAX_TARGETS:
                self.known.setdefault(suffix, here)
            length = name[pos]
            self.out += name[pos : pos + length + 1]
            pos += length + 1
        self.out += b"\x00"

    def pointer(self, offset: int) -> None:
        """Write a name as a pointer to ``offset`` (a name already in the message)."""
        if offset >= self.start:
            self.internal = True
        self.out += struct.pack("!H", 0xC000 | offset)

    def record(self, owner: bytes | int, rtype: int, rclass: int, ttl: int, rdata: bytes) -> None:
        """One RR; ``owner`` is a name, or an offset to point at."""
        if isinstance(owner, int):
            self.pointer(owner)
        else:
            self.name(owner)
        header_at = len(self.out)
        self.out += _RR_HEADER.pack(rtype, rclass, ttl, 0)
        rdata_at = len(self.out)
        self._rdata(rtype, rdata)
        rdlength = len(self.out) - rdata_at
        struct.pack_into("!H", self.out, header_at + 8, rdlength)

    def _rdata(self, rtype: int, rdata: bytes) -> None:
        if rtype in _NAME_AT_START:
            self.name(rdata)
        elif rtype == model.MX:
            self.out += rdata[:2]
            self.name(rdata[2:])
        elif rtype == model.SOA:
            mname_end = _name_end(rdata, 0)
            rname_end = _name_end(rdata, mname_end)
            self.name(rdata[:mname_end])
            self.name(rdata[mname_end:rname_end])
            self.out += rdata[rname_end:]
        else:
            self.out += rdata

    def getvalue(self) -> bytes:
        return bytes(self.out)


def _name_end(wire: bytes, pos: int) -> int:
    """Offset just past the uncompressed name starting at ``pos``."""
    while wire[pos]:
        pos += wire[pos] + 1
    return pos + 1
