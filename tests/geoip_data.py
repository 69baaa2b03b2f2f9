"""GeoIP test data: the shared MaxMind files, and small databases the tests write themselves.

The shared files (``FakeCountry.mmdb``, ``GeoLite2-Country-20141008.mmdb.xz``)
are found in ``$GEOIP_TEST_DATA`` or ``../shared/geoip`` beside the
repository. City, ASN and vendor-layout databases are generated here with
mmdb-writer (a test-only dependency), from the small tables below, so a
test can say which place or AS number an address has.
"""

from __future__ import annotations

import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbF64, MmdbU32, MMDBWriter
from netaddr import IPSet

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GEOIP_TEST_DATA", REPO.parent / "shared" / "geoip"))


def shared_file(name: str) -> Path:
    path = SHARED / name
    assert path.exists(), f"{path} missing: set GEOIP_TEST_DATA to the shared geoip test data"
    return path


def fake_country(dest: Path) -> Path:
    """FakeCountry.mmdb (0.0.0.0/1 NA/US, 128.0.0.0/1 EU/FR) copied to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_file("FakeCountry.mmdb"), dest)
    return dest


def geolite2_country(dest: Path) -> Path:
    """GeoLite2 Country of 2014-10-08, decompressed to ``dest`` (never committed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(shared_file("GeoLite2-Country-20141008.mmdb.xz")) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    return dest


@dataclass(frozen=True)
class Place:
    network: str
    continent: str | None
    country: str | None
    subdivisions: tuple[str, ...] = ()
    city: str | None = None
    coords: tuple[float, float] | None = None


# The City database's networks. Addresses outside them have no data.
PLACES = (
    Place("10.0.0.0/16", "EU", "CZ", ("10", "101"), "Praha", (50.08, 14.42)),
    Place("10.1.0.0/16", "EU", "CZ", ("20", "201"), "Brno", (49.2, 16.6)),
    Place("10.2.0.0/16", "OC", "NZ", ("S", "OTA"), "Dunedin", (-45.87, 170.5)),
    Place("10.3.0.0/16", "EU", "FR", ("IDF", "75"), "Paris", (48.85, 2.35)),
    Place("10.4.0.0/15", "NA", "US", ("TX",), "Dallas", (32.78, -96.8)),
    Place("10.6.0.0/16", "NA", "US", ("CA",), "San Jose", (37.3, -121.9)),
    Place("10.7.0.0/16", "EU", "CH", ("ZH",), "Zürich", (47.37, 8.54)),
    Place("10.8.0.0/16", "EU", None),
    Place("10.9.0.0/16", None, None),
    Place("10.10.0.0/16", "AS", "SG", (), "Singapore", (1.29, 103.85)),
    Place("10.11.0.0/16", "NA", "US", (), None, (37.75, -97.8)),
    Place("10.12.0.0/14", "EU", "DE", ("HE",), "Frankfurt am Main", (50.1, 8.7)),
    Place("10.16.0.0/12", "SA", "BR", ("SP",), "São Paulo", (-23.55, -46.63)),
    Place("10.128.0.0/9", "AS", "JP", ("13",), "Tokyo", (35.69, 139.69)),
    Place("192.0.2.0/24", "NA", "US", ("VA",), "Ashburn", (39.04, -77.49)),
    Place("198.51.100.0/25", "EU", "GB", ("ENG", "LND"), "London", (51.5, -0.12)),
    Place("198.51.100.128/25", "AF", "ZA", ("GT",), "Johannesburg", (-26.2, 28.04)),
    Place("203.0.113.0/24", "OC", "AU", ("NSW",), "Sydney", (-33.87, 151.2)),
    Place("2001:db8::/33", "EU", "DE", ("BE",), "Berlin", (52.5, 13.4)),
    Place("2001:db8:8000::/33", "NA", "US", ("NY",), "New York", (40.7, -74.0)),
    Place("2a00::/12", "EU", "FR", ("IDF",), "Paris", (48.85, 2.35)),
    Place("2400::/12", "AS", "SG", (), "Singapore", (1.29, 103.85)),
    Place("2800::/12", "SA", "AR", ("C",), "Buenos Aires", (-34.6, -58.4)),
)


def maxmind_record(place: Place) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if place.continent:
        record["continent"] = {"code": place.continent, "names": {"en": place.continent}}
    if place.country:
        record["country"] = {"iso_code": place.country, "names": {"en": place.country}}
    if place.subdivisions:
        record["subdivisions"] = [{"iso_code": s, "names": {"en": s}} for s in place.subdivisions]
    if place.city:
        record["city"] = {"names": {"en": place.city, "de": place.city + " (de)"}}
    if place.coords:
        record["location"] = {
            "latitude": MmdbF64(place.coords[0]),
            "longitude": MmdbF64(place.coords[1]),
        }
    return record


def _writer(database_type: str) -> MMDBWriter:
    return MMDBWriter(
        ip_version=6,
        database_type=database_type,
        languages=["en"],
        description="pygdnsd test data",
        ipv4_compatible=True,
    )


def write_city(dest: Path, places: tuple[Place, ...] = PLACES, database_type: str = "GeoIP2-City") -> Path:
    """A GeoIP2-City layout database of ``places``."""
    writer = _writer(database_type)
    for place in places:
        writer.insert_network(IPSet([place.network]), maxmind_record(place))
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(dest))
    return dest


# (network, AS number) of the ASN database (GeoLite2-ASN layout).
ASNS = (
    ("10.0.0.0/15", 64500),  # over Praha and Brno
    ("10.3.0.0/17", 64501),  # half of Paris
    ("192.0.2.0/25", 64502),
    ("2001:db8::/48", 64500),
    ("2a00::/16", 64503),
)


def write_asn(dest: Path, asns: tuple[tuple[str, int], ...] = ASNS) -> Path:
    writer = _writer("GeoLite2-ASN")
    for network, number in asns:
        writer.insert_network(
            IPSet([network]),
            {"autonomous_system_number": MmdbU32(number), "autonomous_system_organization": f"AS{number}"},
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(dest))
    return dest


def vendor_record(place: Place) -> dict[str, Any]:
    """ipinfo-like flat records: other field names, one region, coordinates as text-free floats."""
    record: dict[str, Any] = {}
    if place.continent:
        record["continent_code"] = place.continent
    if place.country:
        record["country_code"] = place.country
    if place.subdivisions:
        record["region_code"] = place.subdivisions[0]
    if place.city:
        record["city"] = place.city
    if place.coords:
        record["lat"] = MmdbF64(place.coords[0])
        record["lng"] = MmdbF64(place.coords[1])
    return record


def write_vendor(dest: Path, places: tuple[Place, ...] = PLACES) -> Path:
    writer = _writer("ipinfo standard_location")
    for place in places:
        writer.insert_network(IPSet([place.network]), vendor_record(place))
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(dest))
    return dest
