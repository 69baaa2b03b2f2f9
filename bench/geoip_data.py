"""The ``geoip`` bench cases' data: GeoLite2 Country, a geoip config, ECS queries.

A real-size database (GeoLite2 Country of 2014-10-08 from the shared test
data: 364,176 tree nodes, 232,696 merged networks in this map), three DYNA
names over it, and queries whose client-subnet options carry random
addresses (IPv4 /24 four times in five, IPv6 /56 otherwise), as a busy
authoritative server sees from many resolvers: few client networks repeat.

``geoip`` has 200,000 queries: dnsperf loops over them, so from the second
pass on each (client network, name) has been seen before, as resolvers ask
again when their answers expire. ``geoip-new`` has 1,500,000: more than a
run sends, so every query brings a client network not seen before.
``geoip-hot`` has 20,000, all seen before after the warm-up: what a
remembered answer costs.
"""

from __future__ import annotations

import lzma
import os
import random
import shutil
import struct
from pathlib import Path

from zonegen import SOA_AND_NS, TYPE_A, TYPE_OPT, write_zone

GEOIP_ZONE = "geo.example"
GEOIP_QUERIES = 200_000
GEOIP_NEW_QUERIES = 1_500_000
GEOIP_HOT_QUERIES = 20_000
# Query count of each geoip case.
GEOIP_CASES = {"geoip": GEOIP_QUERIES, "geoip-new": GEOIP_NEW_QUERIES, "geoip-hot": GEOIP_HOT_QUERIES}
SHARED = Path(os.environ.get("GEOIP_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "geoip"))
OPT_ECS = 8

PLUGINS = """plugins => { geoip => {
  maps => {
    world => {
      geoip2_db => GeoLite2-Country.mmdb
      datacenters => [ us, eu, ap, sa ]
      map => {
        NA => [ us, eu ], SA => [ sa, us ], AF => [ eu, ap ], OC => [ ap, us ]
        EU => { default => [ eu, us ], GB => [ us, eu ], RU => [ ap, eu ] }
        AS => { default => [ ap, eu ], JP => [ ap, us ], IN => [ eu, ap ] }
      }
    }
  }
  resources => {
    www => { map => world, dcmap => { us => 192.0.2.1, eu => [ 192.0.2.2, 192.0.2.3 ], ap => 192.0.2.4, sa => 192.0.2.5 } }
    api => { map => world, dcmap => { us => 192.0.2.11, eu => 192.0.2.12, ap => 192.0.2.14, sa => 192.0.2.15 } }
    cdn => { map => world, skip_first => true, dcmap => { us => 192.0.2.21, eu => 192.0.2.22, ap => 192.0.2.24, sa => 192.0.2.25 } }
  }
} }
"""
NAMES = ("www", "api", "cdn")


def _query(name: str, option: bytes) -> bytes:
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    opt = b"\x00" + struct.pack("!HHIH", TYPE_OPT, 1232, 0, len(option)) + option
    return struct.pack("!6H", 0, 0, 1, 0, 0, 1) + question + struct.pack("!HH", TYPE_A, 1) + opt


def _ecs(rng: random.Random) -> bytes:
    if rng.random() < 0.8:
        data = struct.pack("!HBB", 1, 24, 0) + rng.getrandbits(24).to_bytes(3, "big")
    else:
        prefix = rng.choice((0x2001, 0x2400, 0x2600, 0x2A00, 0x2800)) << 40
        data = struct.pack("!HBB", 2, 56, 0) + (prefix | rng.getrandbits(40)).to_bytes(7, "big")
    return struct.pack("!HH", OPT_ECS, len(data)) + data


def build_geoip(cfgdir: Path, count: int = GEOIP_QUERIES) -> Path:
    """The zone, database and plugin config in ``cfgdir``; returns the dnsperf file of ``count`` queries."""
    database = cfgdir / "geoip" / "GeoLite2-Country.mmdb"
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(SHARED / "GeoLite2-Country-20141008.mmdb.xz") as src, database.open("wb") as out:
            shutil.copyfileobj(src, out)
    (cfgdir / "config.extra").write_text(PLUGINS)
    zone = SOA_AND_NS + "".join(f"{n} DYNA geoip!{n}\n" for n in NAMES)
    write_zone(cfgdir / "zones" / GEOIP_ZONE, iter([zone]))
    queries = cfgdir / ("queries.bin" if count == GEOIP_QUERIES else f"queries-{count}.bin")
    if not queries.exists():
        rng = random.Random(14)
        out = bytearray()
        for _ in range(count):
            wire = _query(f"{rng.choice(NAMES)}.{GEOIP_ZONE}", _ecs(rng))
            out += struct.pack("!H", len(wire)) + wire
        queries.write_bytes(bytes(out))
    return queries
