"""Where a database record says a client is, and which datacenters a map gives that place.

``Layout`` reads a record: MaxMind's GeoIP2/GeoLite2 layout by default, or
another vendor's record paths (same MaxMind DB format, other field names).
``Geography`` is a map's ``map`` stanza and ``auto_dc_coords``: a place ->
an ordered tuple of datacenter numbers, as gdnsd-plugin-geoip(8) describes
and gdnsd 3.8.1 answers (checked with ``gdnsd_geoip_test`` on generated
City databases): continent, then country, then below the country any of
the subdivisions or the city may match, deeper levels found even when the
levels between them are not in the map; ``default`` at every level; with
``auto_dc_coords`` the nearest datacenters by great-circle distance, or the
whole ``datacenters`` list for a place without coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

AUTO: Final = "auto"
Choice = tuple[int, ...] | str  # datacenter numbers, or AUTO
Path = tuple[str, ...]


@dataclass(frozen=True)
class Location:
    continent: str | None = None
    country: str | None = None
    subdivisions: tuple[str, ...] = ()
    city: str | None = None
    coords: tuple[float, float] | None = None


NOWHERE: Final = Location()


def _at(record: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Layout:
    """Record paths to each location field; the defaults are MaxMind's.

    ``subdivisions`` is a list of records each holding ``subdivision_code``;
    a vendor with one flat region field names it in ``subdivision`` instead.
    """

    continent: Path = ("continent", "code")
    country: Path = ("country", "iso_code")
    subdivisions: Path = ("subdivisions",)
    subdivision_code: Path = ("iso_code",)
    subdivision: Path = ()
    city: Path = ("city", "names", "en")
    latitude: Path = ("location", "latitude")
    longitude: Path = ("location", "longitude")

    def locate(self, record: Any, city_level: bool) -> Location:
        """The place a record names; a Country-level database gives continent and country only."""
        continent = _text(_at(record, self.continent))
        country = _text(_at(record, self.country))
        if not city_level:
            return Location(continent, country)
        subs: list[str] = []
        if self.subdivision:
            one = _text(_at(record, self.subdivision))
            if one is not None:
                subs.append(one)
        else:
            listed = _at(record, self.subdivisions)
            if isinstance(listed, list):
                for item in listed:
                    code = _text(_at(item, self.subdivision_code))
                    if code is not None:
                        subs.append(code)
        latitude = _number(_at(record, self.latitude))
        longitude = _number(_at(record, self.longitude))
        coords = None if latitude is None or longitude is None else (latitude, longitude)
        return Location(continent, country, tuple(subs), _text(_at(record, self.city)), coords)


MAXMIND: Final = Layout()


@dataclass(frozen=True)
class Level:
    """One hash of the ``map`` stanza: its own ``default`` and its keys."""

    default: Choice | None = None
    entries: Mapping[str, Choice | Level] = field(default_factory=dict)


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in radians (haversine: stable for close points)."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(
        (lon2 - lon1) / 2
    ) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Geography:
    """A map's placement rules: ``top`` is the ``map`` stanza (``default`` filled in)."""

    top: Level
    everywhere: tuple[int, ...]  # the whole datacenters list, in order
    coords: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    auto_limit: int = 3

    @property
    def auto(self) -> bool:
        return bool(self.coords)

    def choose(self, place: Location) -> tuple[int, ...]:
        return self._resolve(self._choice(place), place)

    def _choice(self, place: Location) -> Choice:
        top = self.top
        default = top.default if top.default is not None else self.everywhere
        if place.continent is None:
            return default
        found = top.entries.get(place.continent)
        if found is None:
            return default
        if not isinstance(found, Level):
            return found
        if found.default is not None:
            default = found.default
        if place.country is None:
            return default
        level = found.entries.get(place.country)
        if level is None:
            return default
        if not isinstance(level, Level):
            return level
        deeper: Sequence[str] = place.subdivisions + ((place.city,) if place.city else ())
        while True:
            if level.default is not None:
                default = level.default
            for i, name in enumerate(deeper):
                hit = level.entries.get(name)
                if hit is None:
                    continue
                if not isinstance(hit, Level):
                    return hit
                level, deeper = hit, deeper[i + 1 :]
                break
            else:
                return default

    def _resolve(self, choice: Choice, place: Location) -> tuple[int, ...]:
        if isinstance(choice, tuple):
            return choice
        if place.coords is None:
            return self.everywhere
        here = place.coords
        ranked = sorted(self.coords, key=lambda dc: (distance(here, self.coords[dc]), dc))
        return tuple(ranked[: self.auto_limit] if self.auto_limit else ranked)
