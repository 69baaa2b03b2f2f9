"""The ``load-city`` bench case's data: a City database of realistic size, and a map over it.

GeoLite2 City is not redistributable here, so its shape is generated
(seeded): about 1,000,000 IPv4 and 200,000 IPv6 networks, 250 countries on
7 continents, 3,000 subdivisions, 100,000 cities with coordinates and
UTF-8 names, and the MaxMind record layout (names in two languages): a
59.7 MB file of 6,655,913 nodes (28-bit records), GeoLite2 City's size.
Networks come the way registries hand them out: most /16s cut into runs of
/24s one city each, some whole, some unassigned. Written once with
mmdb-writer (about 5 minutes of CPU, 3 GB) into ``bench/out/load-city/geoip``.

The map uses ``auto_dc_coords`` with a ``map`` over continents, some
countries and some of their subdivisions and cities, so loading does what
a City map costs: every record read, placed, and a distance computed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from zonegen import SOA_AND_NS, write_zone

CITY_ZONE = "city.example"
CONTINENTS = ("AF", "AS", "EU", "NA", "OC", "SA", "AN")
COUNTRIES = 250
SUBDIVISIONS = 3_000
CITIES = 100_000
V6_NETWORKS = 200_000
# (continent, latitude range, longitude range) boxes where countries are placed.
BOXES = {
    "AF": ((-34, 35), (-17, 51)),
    "AS": ((-10, 55), (60, 145)),
    "EU": ((36, 70), (-10, 40)),
    "NA": ((15, 60), (-125, -60)),
    "OC": ((-45, 0), (110, 178)),
    "SA": ((-55, 12), (-80, -35)),
    "AN": ((-85, -65), (-180, 180)),
}

PLUGINS = """plugins => { geoip => {
  maps => {
    city => {
      geoip2_db => City.mmdb
      datacenters => [ us-east, us-west, eu, ap, sa ]
      auto_dc_coords => {
        us-east => [ 38.9, -77.0 ], us-west => [ 37.3, -121.9 ], eu => [ 50.1, 8.7 ]
        ap => [ 1.3, 103.9 ], sa => [ -23.5, -46.6 ]
      }
      auto_dc_limit => 3
      map => {
        AN => [ sa, ap ]
        EU => { default => auto, C001 => [ eu, us-east ], C002 => { S0001 => [ eu ], default => auto } }
        NA => { C003 => { S0010 => { "Ciudad-33" => [ us-west ] } } }
      }
    }
  }
  resources => {
    www => { map => city, dcmap => { us-east => 192.0.2.1, us-west => 192.0.2.2, eu => 192.0.2.3, ap => 192.0.2.4, sa => 192.0.2.5 } }
  }
} }
"""


def _places(rng: random.Random) -> list[dict[str, Any]]:
    """Every city's MaxMind record."""
    from mmdb_writer import MmdbF64

    countries = []
    for c in range(COUNTRIES):
        continent = CONTINENTS[c % len(CONTINENTS)] if c % 40 else "AN"
        (lat0, lat1), (lon0, lon1) = BOXES[continent]
        lat, lon = rng.uniform(lat0, lat1), rng.uniform(lon0, lon1)
        countries.append((continent, f"C{c:03d}", lat, lon))
    subdivisions = [(rng.randrange(COUNTRIES), f"S{s:04d}") for s in range(SUBDIVISIONS)]
    records = []
    for n in range(CITIES):
        country, code = subdivisions[n % SUBDIVISIONS]
        continent, iso, lat, lon = countries[country]
        name = f"Ciudad-{n}" if n % 7 else f"Zürich-Ålesund-{n}"
        record: dict[str, Any] = {
            "continent": {"code": continent, "geoname_id": CONTINENTS.index(continent), "names": {"en": continent}},
            "country": {"iso_code": iso, "geoname_id": 1000 + country, "names": {"en": iso, "de": iso.lower()}},
            "subdivisions": [{"iso_code": code, "names": {"en": code}}],
            "city": {"geoname_id": 100_000 + n, "names": {"en": name, "de": name + " (de)"}},
            "location": {
                "latitude": MmdbF64(lat + rng.uniform(-3, 3)),
                "longitude": MmdbF64(lon + rng.uniform(-3, 3)),
                "accuracy_radius": 50,
                "time_zone": "Etc/UTC",
            },
        }
        records.append(record)
    return records


def _v4_networks(rng: random.Random) -> list[tuple[int, int, int]]:
    """(start, prefix length, city) for IPv4: /16s whole, in runs of /24s, or unassigned."""
    out = []
    for first in range(1, 224):
        if first in (10, 127):
            continue
        for second in range(256):
            start = (first << 24) | (second << 16)
            pick = rng.random()
            if pick < 0.08:
                continue  # unassigned
            city = rng.randrange(CITIES)
            if pick < 0.25:
                out.append((start, 16, city))
                continue
            third = 0
            while third < 256:
                run = min(rng.choice((1, 1, 1, 2, 2, 4, 8)), 256 - third)
                while third % run:
                    run //= 2
                length = 24 - run.bit_length() + 1
                if rng.random() < 0.4:
                    city = rng.randrange(CITIES)  # mostly the next town over
                out.append((start | (third << 8), length, city))
                third += run
    return out


def _v6_networks(rng: random.Random) -> list[tuple[int, int, int]]:
    """(start, prefix length, city) for IPv6: /32 allocations cut into /48s and /40s."""
    out = []
    taken = set()
    while len(out) < V6_NETWORKS:
        top = rng.choice((0x2001, 0x2400, 0x2401, 0x2600, 0x2603, 0x2800, 0x2A00, 0x2A01, 0x2A02, 0x2C0F))
        allocation = (top << 16) | rng.getrandbits(16)
        if allocation in taken:
            continue
        taken.add(allocation)
        city = rng.randrange(CITIES)
        for sub in range(rng.choice((1, 4, 16, 64))):
            length = rng.choice((40, 48))
            bits = 40 - 32 if length == 40 else 48 - 32
            start = (allocation << 96) | ((sub % (1 << bits)) << (128 - length))
            out.append((start, length, city if rng.random() < 0.7 else rng.randrange(CITIES)))
    return out


def write_city_database(dest: Path, seed: int = 2014) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPNetwork, IPSet

    rng = random.Random(seed)
    records = _places(rng)
    writer = MMDBWriter(
        ip_version=6,
        database_type="GeoLite2-City",
        languages=["en", "de"],
        description="pygdnsd bench: a generated City database of realistic size",
        ipv4_compatible=True,
    )
    for start, length, city in _v4_networks(rng):
        writer.insert_network(IPSet([IPNetwork((start, length), version=4)]), records[city])
    for start, length, city in _v6_networks(rng):
        writer.insert_network(IPSet([IPNetwork((start, length), version=6)]), records[city])
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    writer.to_db_file(str(partial))
    partial.rename(dest)


def build_city(cfgdir: Path) -> None:
    """The database, the plugin config (``config.extra``) and a zone using it, in ``cfgdir``."""
    database = cfgdir / "geoip" / "City.mmdb"
    if not database.exists():
        write_city_database(database)
    (cfgdir / "config.extra").write_text(PLUGINS)
    target = cfgdir / "zones" / CITY_ZONE
    if not target.exists():
        write_zone(target, iter([SOA_AND_NS + "www DYNA geoip!www\n"]))
