"""Shared pieces of the engine tests: building queries, reading responses, tiny zones.

No tests live here. Responses are decoded by a small independent parser (not
the engine's code) so the tests check the wire bytes the engine writes.

A test module gets the usual fixtures by naming them::

    zones = zones_fixture()  # DEFAULT_ZONES, loaded once per module
    engine = engine_fixture(nsid=b"ns-1")  # a fresh Responder per test
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.engine.stats import Stats
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.model import ZoneSet
from pygdnsd.zones.settings import ZoneSettings

V4 = bytes((127, 0, 0, 1))
V6 = bytes(15) + b"\x01"

A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, NAPTR, OPT, ANY = (
    1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 35, 41, 255,
)

EXAMPLE_COM = """\
$TTL 3600
@       SOA ns1 hostmaster 1 7200 1800 259200 900
        NS  ns1
        NS  ns2.example.net.
        MX  10 mail
        A   192.0.2.1
ns1     A   192.0.2.53
        AAAA 2001:db8::53
www     300 A 192.0.2.10
        A   192.0.2.11
        A   192.0.2.12
        AAAA 2001:db8::10
mail    A   192.0.2.25
ftp     CNAME www
ext     CNAME www.example.net.
chain1  CNAME chain2
chain2  CNAME www
dangling CNAME nowhere
ptr     PTR www
_sip._tcp SRV 10 60 5060 sip
sip     A   192.0.2.50
naptr   NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp
txt     TXT "hello" "world"
mid     TXT "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
a.b.ent A   192.0.2.60
*.wild  A   192.0.2.100
        MX  10 mail
*.wc    CNAME www
deleg   NS  ns1.deleg
        NS  ns2.deleg
        NS  ns.example.net.
ns1.deleg A 192.0.2.130
        AAAA 2001:db8::130
ns2.deleg A 192.0.2.131
deleg2  NS  ns1
deleg3  NS  ns.outside.test.
        NS  ns1.deleg3
ns1.deleg3 A 192.0.2.140
ns.outside.test. A 198.51.100.53
ns.outside.test. AAAA 2001:db8:ffff::53
tocut   CNAME host.deleg
big     A 10.0.0.1
        A 10.0.0.2
        A 10.0.0.3
        A 10.0.0.4
        A 10.0.0.5
        A 10.0.0.6
        A 10.0.0.7
        A 10.0.0.8
        A 10.0.0.9
        A 10.0.0.10
        A 10.0.0.11
        A 10.0.0.12
        A 10.0.0.13
        A 10.0.0.14
        A 10.0.0.15
        A 10.0.0.16
        A 10.0.0.17
        A 10.0.0.18
        A 10.0.0.19
        A 10.0.0.20
        A 10.0.0.21
        A 10.0.0.22
        A 10.0.0.23
        A 10.0.0.24
        A 10.0.0.25
        A 10.0.0.26
        A 10.0.0.27
        A 10.0.0.28
        A 10.0.0.29
        A 10.0.0.30
        A 10.0.0.31
        A 10.0.0.32
        A 10.0.0.33
        A 10.0.0.34
        A 10.0.0.35
        A 10.0.0.36
        A 10.0.0.37
        A 10.0.0.38
        A 10.0.0.39
        A 10.0.0.40
"""

EXAMPLE_NET = """\
$TTL 7200
@       SOA ns hostmaster 5 7200 1800 259200 60
        NS  ns
ns      A   192.0.2.200
www     A   192.0.2.201
"""

DEFAULT_ZONES = {"example.com": EXAMPLE_COM, "example.net": EXAMPLE_NET}


def write_zones(directory: Path, zones: dict[str, str], settings: ZoneSettings | None = None) -> ZoneSet:
    """Write one file per zone into ``directory/zones`` and load them."""
    zones_dir = directory / "zones"
    zones_dir.mkdir(parents=True, exist_ok=True)
    for apex, text in zones.items():
        (zones_dir / apex).write_text(text)
    return load_zones(zones_dir, settings or ZoneSettings())


def responder(zones: ZoneSet, **settings: object) -> Responder:
    return Responder(zones, EngineSettings(**settings), Stats())  # type: ignore[arg-type]


def zones_fixture() -> Callable[..., Any]:
    """A module-scoped ``zones`` fixture: ``DEFAULT_ZONES`` written to a temp dir and loaded."""

    @pytest.fixture(scope="module", name="zones")
    def zones(tmp_path_factory: pytest.TempPathFactory) -> ZoneSet:
        return write_zones(tmp_path_factory.mktemp("engine-zones"), DEFAULT_ZONES)

    return zones


def engine_fixture(**settings: object) -> Callable[..., Any]:
    """An ``engine`` fixture: a fresh ``responder`` with ``settings`` over the module's ``zones``."""

    @pytest.fixture(name="engine")
    def engine(zones: ZoneSet) -> Responder:
        return responder(zones, **settings)

    return engine


def wire_name(text: str) -> bytes:
    """Wire form of ``text`` (case kept); ``"."`` or ``""`` is the root."""
    labels = [label for label in text.rstrip(".").split(".") if label]
    return b"".join(bytes((len(label),)) + label.encode() for label in labels) + b"\x00"


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def opt_rr(size: int = 4096, do: bool = False, version: int = 0, options: bytes = b"", ext_rcode: int = 0) -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", OPT, size, ttl, len(options)) + options


def query(
    qname: str,
    qtype: int = A,
    qclass: int = 1,
    *,
    ident: int = 0x1234,
    rd: bool = True,
    opcode: int = 0,
    edns: bytes | None = None,
    flags: int = 0,
) -> bytes:
    """A one-question query; ``edns`` is an OPT RR (see ``opt_rr``) for the additional section."""
    byte2 = (opcode << 3) | (0x01 if rd else 0) | (flags >> 8)
    header = struct.pack("!HBBHHHH", ident, byte2, flags & 0xFF, 1, 0, 0, 1 if edns else 0)
    return header + wire_name(qname) + struct.pack("!HH", qtype, qclass) + (edns or b"")


@dataclass(frozen=True)
class RR:
    owner: bytes  # decompressed wire name, case as written
    owner_raw: bytes  # the owner bytes as they sit in the message (pointer or labels)
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes  # as on the wire (names may be compressed)
    rdata_at: int  # offset of rdata in the message


def _header_bit(mask: int) -> property:
    """A bool property: whether ``mask``'s bit is set in a ``Message``'s 16-bit flags word."""
    return property(lambda message: bool(message.flags & mask))


@dataclass
class Message:
    raw: bytes
    ident: int
    flags: int  # 16-bit flags word
    qdcount: int
    counts: tuple[int, int, int]
    question: bytes  # qname + qtype + qclass as on the wire
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)

    qr = _header_bit(0x8000)
    aa = _header_bit(0x0400)
    tc = _header_bit(0x0200)
    rd = _header_bit(0x0100)
    ra = _header_bit(0x0080)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0x0F

    @property
    def rcode(self) -> int:
        """The full rcode: header bits plus the OPT's extended bits."""
        opt = self.opt
        return (self.flags & 0x0F) | ((opt.ttl >> 24) << 4 if opt else 0)

    @property
    def opt(self) -> RR | None:
        opts = [rr for rr in self.additional if rr.rtype == OPT]
        assert len(opts) <= 1, "more than one OPT in a response"
        return opts[0] if opts else None

    @property
    def options(self) -> list[tuple[int, bytes]]:
        """Our OPT's options, in order."""
        opt = self.opt
        assert opt is not None, "response has no OPT"
        out = []
        pos = 0
        while pos < len(opt.rdata):
            code, length = struct.unpack_from("!HH", opt.rdata, pos)
            out.append((code, opt.rdata[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        assert pos == len(opt.rdata), "OPT options overrun the rdata"
        return out

    def name_at(self, pos: int) -> bytes:
        return read_name(self.raw, pos)[0]


def read_name(msg: bytes, pos: int) -> tuple[bytes, int]:
    """(decompressed name, offset after the name where it started); pointers must point backwards."""
    out = b""
    end = None
    for _ in range(128):
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            assert target < pos, "compression pointer does not point backwards"
            if end is None:
                end = pos + 2
            pos = target
            continue
        out += msg[pos : pos + length + 1]
        pos += length + 1
        if length == 0:
            return out, end if end is not None else pos
    raise AssertionError("name too long")


def parse(msg: bytes | None) -> Message:
    assert msg is not None, "no response"
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg)
    pos = 12
    question = b""
    for _ in range(qd):
        _, after = read_name(msg, pos)
        question = msg[pos : after + 4]
        pos = after + 4
    message = Message(msg, ident, flags, qd, (an, ns, ar), question)
    for count, section in ((an, message.answer), (ns, message.authority), (ar, message.additional)):
        for _ in range(count):
            owner, after = read_name(msg, pos)
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, after)
            rdata_at = after + 10
            section.append(
                RR(owner, msg[pos:after], rtype, rclass, ttl, msg[rdata_at : rdata_at + rdlen], rdata_at)
            )
            pos = rdata_at + rdlen
    assert pos == len(msg), f"{len(msg) - pos} trailing bytes"
    return message


def ask(
    engine: Responder, name: str = "www.example.com", qtype: int = A, qclass: int = 1, *, tcp: bool = False
) -> Message:
    """The parsed answer to a plain query (no EDNS) from 127.0.0.1."""
    return parse(engine.respond(query(name, qtype, qclass), V4, tcp))
