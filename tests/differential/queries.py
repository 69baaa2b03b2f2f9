"""The differential query set: zone-derived queries plus hand-written edge cases.

Every probe is a raw packet and a transport; building packets by hand keeps
malformed cases possible and the set deterministic (same bytes every run).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, NAPTR, OPT, DS, CAA = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 41, 43, 257,
)
ANY, AXFR, IXFR, MAILA, MAILB, TSIG, TKEY = 255, 252, 251, 254, 253, 250, 249
IN, CH, CLASS_ANY = 1, 3, 255

NSID, ECS, COOKIE, KEEPALIVE, PADDING = 3, 8, 10, 11, 12


@dataclass(frozen=True)
class Probe:
    label: str
    packet: bytes
    tcp: bool = False


def wire_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(qid: int = 0x1234, flags: int = 0, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


def question(name: str, qtype: int = A, qclass: int = IN) -> bytes:
    return wire_name(name) + struct.pack("!HH", qtype, qclass)


def option(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def opt_rr(udp: int = 4096, version: int = 0, flags: int = 0, ext_rcode: int = 0,
           options: bytes = b"", owner: bytes = b"\0") -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | flags
    return owner + struct.pack("!HHIH", OPT, udp, ttl, len(options)) + options


def query(name: str, qtype: int = A, qclass: int = IN, *, qid: int = 0x1234, rd: bool = False,
          edns: bytes | None = None) -> bytes:
    flags = 0x0100 if rd else 0
    return header(qid, flags, ar=1 if edns is not None else 0) + question(name, qtype, qclass) + (edns or b"")


def mixed_case(name: str, seed: int) -> str:
    """``name`` with letters upper-cased in a pattern fixed by ``seed``."""
    return "".join(
        ch.upper() if ch.isalpha() and (i + seed) % 3 == 0 else ch for i, ch in enumerate(name)
    )


# Names that exist, are synthesised, or are missing, in tests/data/diff/main/zones.
ZONE_NAMES = [
    "example.com", "ns1.example.com", "www.example.com", "mail.example.com", "ftp.example.com",
    "ext.example.com", "chain1.example.com", "chain2.example.com", "dangling.example.com",
    "_sip._tcp.example.com", "_tcp.example.com", "sip.example.com", "naptr.example.com",
    "ptr.example.com", "txt.example.com", "longtxt.example.com", "caa.example.com",
    "unk.example.com", "_acme-challenge.example.com", "_acme-challenge.www.example.com",
    "lowttl.example.com", "highttl.example.com", "mixedcase.example.com", "a.b.ent.example.com",
    "b.ent.example.com", "ent.example.com", "zz.wild.example.com", "a.b.wild.example.com",
    "wild.example.com", "*.wild.example.com", "foo.wc.example.com", "wc.example.com",
    "y.ent2.example.com", "q.y.ent2.example.com", "x.y.ent2.example.com", "z.ent2.example.com",
    "deleg.example.com", "foo.deleg.example.com", "ns1.deleg.example.com", "deleg2.example.com",
    "a.deleg2.example.com", "big.example.com", "nonexist.example.com", "a.nonexist.example.com",
    "example.net", "ns.example.net", "foo.example.net", "www.example.net", "a.b.example.net",
    "2.0.192.in-addr.arpa", "10.2.0.192.in-addr.arpa", "99.2.0.192.in-addr.arpa",
    "example.org", "com", ".", "0.192.in-addr.arpa",
]
QTYPES = [A, AAAA, NS, SOA, MX, TXT, CNAME, PTR, SRV, NAPTR, CAA, ANY, DS, 65280]


def zone_probes() -> Iterator[Probe]:
    """Every zone name with every common qtype, varying case, RD, EDNS and transport."""
    n = 0
    for name in ZONE_NAMES:
        for qtype in QTYPES:
            n += 1
            qname = mixed_case(name, n) if n % 2 else name
            edns = opt_rr(udp=1232, flags=0x8000 if n % 5 == 0 else 0) if n % 3 else None
            tcp = n % 4 == 0
            yield Probe(f"{qname} type{qtype} edns={edns is not None} tcp={tcp}",
                        query(qname, qtype, rd=n % 2 == 0, qid=n, edns=edns), tcp)


def class_probes() -> Iterator[Probe]:
    for name in ("www.example.com", "version.bind", "example.org", "Hostname.Bind"):
        for qtype in (A, TXT, ANY):
            for qclass in (CH, CLASS_ANY, 42, 254):
                yield Probe(f"{name} type{qtype} class{qclass}", query(name, qtype, qclass))
        yield Probe(f"{name} CH edns", query(name, TXT, CH, edns=opt_rr()))
        yield Probe(f"{name} CH tcp", query(name, TXT, CH), tcp=True)


def notimp_probes() -> Iterator[Probe]:
    for qtype in (AXFR, IXFR, MAILA, MAILB, TSIG, TKEY, 0, OPT):
        for name in ("example.com", "www.example.com", "example.org"):
            yield Probe(f"{name} type{qtype} udp", query(name, qtype))
            yield Probe(f"{name} type{qtype} tcp edns", query(name, qtype, edns=opt_rr()), tcp=True)
    q = question("www.example.com")
    for opcode in (1, 2, 3, 4, 5, 7, 15):
        yield Probe(f"opcode {opcode}", header(flags=opcode << 11) + q)
        yield Probe(f"opcode {opcode} edns rd", header(flags=(opcode << 11) | 0x100, ar=1) + q + opt_rr())


def malformed_probes() -> Iterator[Probe]:
    q = question("www.example.com")
    for tcp in (False, True):
        t = " tcp" if tcp else ""
        yield Probe("qdcount 0" + t, header(qd=0), tcp)
        yield Probe("qdcount 0 with opt" + t, header(qd=0, ar=1) + opt_rr(), tcp)
        yield Probe("qdcount 2" + t, header(qd=2) + q + q, tcp)
        yield Probe("qdcount 2 edns" + t, header(qd=2, ar=1) + q + q + opt_rr(), tcp)
        yield Probe("header only" + t, header(), tcp)
        yield Probe("question cut in name" + t, header() + q[:5], tcp)
        yield Probe("question cut in type" + t, header() + q[:-3], tcp)
        yield Probe("ancount 1 no data" + t, header(an=1) + q, tcp)
        yield Probe("nscount 1 no data" + t, header(ns=1) + q, tcp)
        yield Probe("arcount 1 no data" + t, header(ar=1) + q, tcp)
    yield Probe("qr set", header(flags=0x8000) + q)
    yield Probe("11 bytes", header()[:11])
    yield Probe("empty", b"")
    yield Probe("rcode 3 in query", header(flags=3) + q)
    for bit in (0x0040, 0x0020, 0x0010, 0x0200, 0x0400, 0x0080, 0x07F0 | 0x0100):
        yield Probe(f"flag bits {bit:#06x}", header(flags=bit) + q)
    yield Probe("compression pointer in question", header() + b"\xc0\x0c" + struct.pack("!HH", A, IN))
    yield Probe("pointer to later name",
                header() + b"\x03www\xc0\x11" + struct.pack("!HH", A, IN) + wire_name("example.com"))
    yield Probe("label 64", header() + bytes([64]) + b"a" * 64 + wire_name("example.com") + struct.pack("!HH", A, IN))
    long_name = ".".join(["a" * 63] * 4) + ".example.com"
    yield Probe("name over 255", header() + wire_name(long_name) + struct.pack("!HH", A, IN))
    yield Probe("name 255ish", query(".".join(["b" * 60] * 3) + ".x.example.com"))
    yield Probe("label type 0x40", header() + b"\x41" + b"x" * 20 + b"\0" + struct.pack("!HH", A, IN))
    yield Probe("trailing garbage", query("www.example.com") + b"garbage")
    yield Probe("opt in answer", header(an=1) + q + opt_rr())
    yield Probe("opt in authority", header(ns=1) + q + opt_rr())
    yield Probe("opt nonroot owner", header(ar=1) + q + opt_rr(owner=wire_name("example.com")))
    yield Probe("two opts", header(ar=2) + q + opt_rr() + opt_rr())
    yield Probe("opt cut short", header(ar=1) + q + opt_rr()[:-2])
    yield Probe("opt rdlen too long", header(ar=1) + q + opt_rr(options=option(NSID))[:-2])
    yield Probe("opt option overrun", header(ar=1) + q + b"\0" + struct.pack("!HHIH", OPT, 4096, 0, 4) + struct.pack("!HH", NSID, 10))
    yield Probe("A record in additional", header(ar=1) + q + wire_name("x.example.com") + struct.pack("!HHIH", A, IN, 0, 4) + bytes(4))
    yield Probe("opt then A in additional", header(ar=2) + q + opt_rr() + wire_name("x") + struct.pack("!HHIH", A, IN, 0, 4) + bytes(4))


def edns_probes() -> Iterator[Probe]:
    q = question("www.example.com")
    base = header(ar=1) + q
    cases: list[tuple[str, bytes]] = [
        ("udp 512", opt_rr(udp=512)), ("udp 100", opt_rr(udp=100)), ("udp 65535", opt_rr(udp=65535)),
        ("DO", opt_rr(flags=0x8000)), ("other ednsflags", opt_rr(flags=0x7FFF)),
        ("version 1", opt_rr(version=1)), ("version 1 DO", opt_rr(version=1, flags=0x8000)),
        ("version 255 nsid", opt_rr(version=255, options=option(NSID))),
        ("ext rcode in query", opt_rr(ext_rcode=1)),
        ("nsid", opt_rr(options=option(NSID))),
        ("nsid with data", opt_rr(options=option(NSID, b"xx"))),
        ("unknown option", opt_rr(options=option(65001, b"abc"))),
        ("padding", opt_rr(options=option(PADDING, bytes(8)))),
        ("ecs v4/24", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 24, 0) + bytes([192, 0, 2])))),
        ("ecs v4/32", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 32, 0) + bytes([192, 0, 2, 1])))),
        ("ecs v6/56", opt_rr(options=option(ECS, struct.pack("!HBB", 2, 56, 0) + bytes(7)))),
        ("ecs v4/0", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 0, 0)))),
        ("ecs bad scope", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 24, 5) + bytes([192, 0, 2])))),
        ("ecs short address", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 24, 0) + bytes([192, 0])))),
        ("ecs family 3", opt_rr(options=option(ECS, struct.pack("!HBB", 3, 0, 0)))),
        ("ecs v4/33", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 33, 0) + bytes(5)))),
        ("ecs stray bits", opt_rr(options=option(ECS, struct.pack("!HBB", 1, 23, 0) + bytes([192, 0, 3])))),
        ("cookie client", opt_rr(options=option(COOKIE, b"12345678"))),
        ("cookie 5 bytes", opt_rr(options=option(COOKIE, b"12345"))),
        ("cookie client+foreign server", opt_rr(options=option(COOKIE, b"12345678" + b"s" * 16))),
        ("cookie server 7 bytes", opt_rr(options=option(COOKIE, b"12345678" + b"s" * 7))),
        ("cookie 41 bytes", opt_rr(options=option(COOKIE, b"c" * 41))),
        ("cookie+nsid+ecs", opt_rr(options=option(COOKIE, b"abcdefgh") + option(NSID) + option(ECS, struct.pack("!HBB", 1, 8, 0) + b"\x0a"))),
        ("keepalive", opt_rr(options=option(KEEPALIVE))),
        ("keepalive with value", opt_rr(options=option(KEEPALIVE, b"\x00\x10"))),
    ]
    for label, opt in cases:
        yield Probe(f"edns {label}", base + opt)
        yield Probe(f"edns {label} tcp", base + opt, tcp=True)
    for label, opt in cases[:12]:
        yield Probe(f"edns {label} nxdomain", header(ar=1) + question("nope.example.com") + opt)
        yield Probe(f"edns {label} refused", header(ar=1) + question("example.org") + opt)


def size_probes() -> Iterator[Probe]:
    for name, qtype in (("big.example.com", A), ("bigtxt.example.com", TXT), ("huge.example.com", TXT),
                        ("longtxt.example.com", TXT), ("deleg.example.com", A), ("Big.Example.com", ANY)):
        yield Probe(f"{name} plain udp", query(name, qtype))
        yield Probe(f"{name} plain tcp", query(name, qtype), tcp=True)
        for udp in (512, 700, 1232, 1400, 4096, 65535):
            yield Probe(f"{name} edns {udp}", query(name, qtype, edns=opt_rr(udp=udp)))
        yield Probe(f"{name} edns tcp", query(name, qtype, edns=opt_rr(udp=512)), tcp=True)
        yield Probe(f"{name} edns cookie", query(name, qtype, edns=opt_rr(options=option(COOKIE, b"12345678"))))
        yield Probe(f"{name} edns nsid", query(name, qtype, edns=opt_rr(udp=1232, options=option(NSID))))


def all_probes() -> list[Probe]:
    probes = [*zone_probes(), *class_probes(), *notimp_probes(), *malformed_probes(),
              *edns_probes(), *size_probes()]
    labels = [p.label for p in probes]
    assert len(labels) == len(set(labels)), "probe labels must be unique"
    return probes
