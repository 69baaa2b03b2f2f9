"""Generated benchmark data: config dirs, zone files and dnsperf query files.

Everything is deterministic (seeded), so both servers and every run see the
same bytes. Nothing here is committed: callers write under ``bench/out/`` or
a temp dir.

Three data sets:

* ``mixed``: one zone, ``bench.example``, whose names cover every answer
  shape the query mix asks for (hits, NXDOMAIN, NODATA, wildcard, referral,
  CNAME, MX/TXT/SRV), plus a binary query file (dnsperf ``-B``) in which half
  of the queries carry EDNS with DO set, as resolvers send, and a share have
  mixed-case names.
* ``big``: one zone of about 1M records of mixed types (A, AAAA, MX, TXT,
  CNAME, SRV, NS delegations with glue).
* ``many``: 1,000 zones of 1,000 records each.
* ``warn``: ``big`` with every MX pointing at a name without addresses:
  about 100,000 "same-zone target has no addresses" warnings, as gdnsd
  prints them too.
* ``styles``: ``big``'s records written as people write them: a
  parenthesized multi-line SOA, and the TTL and class columns on every line.
* ``everyday``: ``many``'s zones in that style, a TTL column on some owners
  only; each zone warns once (its SOA TTL is above the negative-cache field).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MIXED_ZONE = "bench.example"
MIXED_HOSTS = 20_000
MIXED_DELEGATIONS = 2_000
MIXED_QUERIES = 200_000
HOT_SPREAD = 400
BIG_ZONE = "big.example"
BIG_RECORDS = 1_000_000
MANY_ZONES = 1_000
MANY_RECORDS = 1_000

SOA_AND_NS = """\
$TTL 3600
@ SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
"""

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_MX, TYPE_TXT, TYPE_AAAA, TYPE_SRV, TYPE_OPT = 1, 2, 5, 15, 16, 28, 33, 41
DO_BIT = 0x8000
EDNS_PAYLOAD = 1232


@dataclass(frozen=True, slots=True)
class ConfigDir:
    """A gdnsd config dir: ``config`` listening on 127.0.0.1:port, and ``zones/``."""

    path: Path

    @property
    def zones(self) -> Path:
        return self.path / "zones"


def write_config(
    cfgdir: Path, port: int, rundir: Path, udp_threads: int, tcp_threads: int, options: str = ""
) -> None:
    """(Re)write ``cfgdir/config`` for one server run; zones are left alone.

    A case's other stanzas (e.g. ``plugins``) wait in ``cfgdir/config.extra``;
    ``options`` are more lines for the options hash (e.g. ``http_listen``).
    """
    cfgdir.mkdir(parents=True, exist_ok=True)
    (rundir / "run").mkdir(parents=True, exist_ok=True)
    (rundir / "state").mkdir(parents=True, exist_ok=True)
    (cfgdir / "config").write_text(
        "options => {\n"
        "  listen => [ 127.0.0.1 ]\n"
        f"  dns_port => {port}\n"
        f"  udp_threads => {udp_threads}\n"
        f"  tcp_threads => {tcp_threads}\n"
        f"  run_dir => {rundir / 'run'}\n"
        f"  state_dir => {rundir / 'state'}\n"
        f"{options}"
        "}\n" + (extra.read_text() if (extra := cfgdir / "config.extra").exists() else "")
    )


def _host_v4(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _host_v6(i: int) -> str:
    return f"2001:db8::{(i >> 16) & 0xFFFF:x}:{i & 0xFFFF:x}"


def mixed_zone_text() -> str:
    lines = [SOA_AND_NS, "@ MX 10 mail\nmail A 192.0.2.25\n", "*.wild A 192.0.2.80\n"]
    for i in range(MIXED_HOSTS):
        lines.append(f"h{i} A {_host_v4(i)}\nh{i} AAAA {_host_v6(i)}\n")
        if i % 4 == 0:
            lines.append(f"h{i} MX 10 mail\nh{i} TXT \"host {i} v=spf1 -all\"\n")
        if i % 2 == 0:
            lines.append(f"c{i} CNAME h{i}\n")
        if i % 10 == 0:
            lines.append(f"_sip._udp.s{i} SRV 10 20 5060 h{i}\n")
    for i in range(MIXED_DELEGATIONS):
        lines.append(f"d{i} NS ns.d{i}\nns.d{i} A {_host_v4(i + 1_000_000)}\n")
    return "".join(lines)


def _mixed_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


SHAPES: tuple[tuple[str, int, Callable[[int], tuple[str, int]]], ...] = (
    ("hit A", 25, lambda i: (f"h{i}", TYPE_A)),
    ("hit AAAA", 10, lambda i: (f"h{i}", TYPE_AAAA)),
    ("hit MX", 5, lambda i: (f"h{i - i % 4}", TYPE_MX)),  # with additional addresses
    ("hit TXT", 5, lambda i: (f"h{i - i % 4}", TYPE_TXT)),
    ("hit SRV", 3, lambda i: (f"_sip._udp.s{i - i % 10}", TYPE_SRV)),
    ("NXDOMAIN", 15, lambda i: (f"nx{i}", TYPE_A)),
    ("NODATA", 10, lambda i: (f"h{i - i % 4 + 1}", TYPE_MX)),  # a host without MX
    ("wildcard", 10, lambda i: (f"x{i}.wild", TYPE_A)),
    ("referral", 7, lambda i: (f"www.d{i % MIXED_DELEGATIONS}", TYPE_A)),
    ("CNAME", 10, lambda i: (f"c{i - i % 2}", TYPE_A)),  # chain to an in-zone A
)


def mixed_questions(
    count: int, spread: int = MIXED_HOSTS, seed: int = 6
) -> Iterator[tuple[str, str, int]]:
    """(shape, name, qtype): the answer shapes in fixed proportions, a third in mixed case.

    Numbered names are drawn from ``spread`` values: the whole zone (about 85k
    distinct questions in 200k, a long tail no answer cache holds in a 10 s
    run) or a few hundred (a hot set that any cache holds).
    """
    rng = random.Random(seed)
    weights = [weight for _, weight, _ in SHAPES]
    for _ in range(count):
        shape, _, make = rng.choices(SHAPES, weights)[0]
        label, qtype = make(rng.randrange(4, min(spread, MIXED_HOSTS) - 4))
        name = f"{label}.{MIXED_ZONE}"
        if rng.random() < 1 / 3:
            name = _mixed_case(name, rng)
        yield shape, name, qtype


def query_wire(name: str, qtype: int, edns_do: bool) -> bytes:
    """One query message (ID 0: dnsperf overwrites it), RD clear as resolvers send to auths."""
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    header = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1 if edns_do else 0)
    body = header + question + struct.pack("!HH", qtype, 1)
    if edns_do:
        body += b"\x00" + struct.pack("!HHIH", TYPE_OPT, EDNS_PAYLOAD, DO_BIT, 0)
    return body


def write_mixed_queries(path: Path, count: int = MIXED_QUERIES, spread: int = MIXED_HOSTS) -> None:
    """dnsperf ``-B`` input: every other query has EDNS with DO."""
    out = bytearray()
    for n, (_shape, name, qtype) in enumerate(mixed_questions(count, spread)):
        wire = query_wire(name, qtype, edns_do=n % 2 == 1)
        out += struct.pack("!H", len(wire)) + wire
    path.write_bytes(bytes(out))


# The SOA and apex records of the ``styles`` and ``everyday`` sets: the SOA over three lines, with comments.
STYLED_SOA_AND_NS = """\
$TTL 3600
@ 3600 IN SOA ns1 hostmaster (
        1       ; serial
        7200 1800 259200
        900 )   ; minimum
@ 3600 IN NS ns1
@ 3600 IN NS ns2
ns1 3600 IN A 192.0.2.1
ns2 3600 IN A 192.0.2.2
"""


def big_zone_lines(records: int, mx_without_address: bool = False) -> Iterator[str]:
    """About ``records`` records cycling through the mixed types (delegations count NS + glue).

    ``mx_without_address``: every MX points at a name holding no address (one warning each).
    """
    yield SOA_AND_NS
    n = 5
    i = 0
    while n < records:
        kind = i % 10
        if kind in (0, 1, 2):
            yield f"a{i} A {_host_v4(i)}\n"
            n += 1
        elif kind in (3, 4):
            yield f"a{i} AAAA {_host_v6(i)}\n"
            n += 1
        elif kind == 5:
            yield f"m{i} MX 10 {'nx' if mx_without_address else 'a'}{i - 5}\n"
            n += 1
        elif kind == 6:
            yield f"t{i} TXT \"v=spf1 ip4:{_host_v4(i)} -all\" \"record {i}\"\n"
            n += 1
        elif kind == 7:
            yield f"c{i} CNAME a{i - 7}\n"
            n += 1
        elif kind == 8:
            yield f"_sip._tcp.s{i} SRV 10 20 5060 a{i - 8}\n"
            n += 1
        else:
            yield f"d{i} NS ns1.d{i}\nd{i} NS ns2.d{i}\nns1.d{i} A {_host_v4(i)}\nns2.d{i} AAAA {_host_v6(i)}\n"
            n += 4
        i += 1


def styled(lines: Iterator[str], ttl_column: Callable[[str], bool]) -> Iterator[str]:
    """``big_zone_lines``'s records with the styled SOA and an ``IN`` class column on every line.

    A TTL column (the $TTL's value, so the records stay the same) goes on the
    lines whose owner ``ttl_column`` picks.
    """
    header = next(lines)
    assert header == SOA_AND_NS
    yield STYLED_SOA_AND_NS
    for chunk in lines:
        out = []
        for line in chunk.splitlines(keepends=True):
            owner, rest = line.split(" ", 1)
            out.append(f"{owner} 3600 IN {rest}" if ttl_column(owner) else f"{owner} IN {rest}")
        yield "".join(out)


def write_zone(path: Path, lines: Iterator[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 10_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


def build_mixed(cfgdir: Path, hot: bool = False) -> Path:
    """The mixed zone in ``cfgdir/zones`` and a query file (the whole zone, or a hot set)."""
    write_zone(cfgdir / "zones" / MIXED_ZONE, iter([mixed_zone_text()]))
    queries = cfgdir / ("queries-hot.bin" if hot else "queries.bin")
    if not queries.exists():
        write_mixed_queries(queries, spread=HOT_SPREAD if hot else MIXED_HOSTS)
    return queries


def build_big(cfgdir: Path, records: int = BIG_RECORDS) -> None:
    target = cfgdir / "zones" / BIG_ZONE
    if not target.exists():
        write_zone(target, big_zone_lines(records))


def build_many(cfgdir: Path, zones: int = MANY_ZONES, records: int = MANY_RECORDS) -> None:
    for z in range(zones):
        target = cfgdir / "zones" / f"z{z}.example"
        if not target.exists():
            write_zone(target, big_zone_lines(records))


def build_warn(cfgdir: Path, records: int = BIG_RECORDS) -> None:
    target = cfgdir / "zones" / BIG_ZONE
    if not target.exists():
        write_zone(target, big_zone_lines(records, mx_without_address=True))


def build_styles(cfgdir: Path, records: int = BIG_RECORDS) -> None:
    target = cfgdir / "zones" / BIG_ZONE
    if not target.exists():
        write_zone(target, styled(big_zone_lines(records), lambda owner: True))


def build_everyday(cfgdir: Path, zones: int = MANY_ZONES, records: int = MANY_RECORDS) -> None:
    """``build_many`` in everyday style: a TTL column on one owner in ten."""
    for z in range(zones):
        target = cfgdir / "zones" / f"z{z}.example"
        if not target.exists():
            write_zone(target, styled(big_zone_lines(records), lambda owner: owner.endswith("3")))
