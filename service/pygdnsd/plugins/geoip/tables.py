"""A map's files -> its table: databases walked, nets laid over them, networks merged.

``load_table`` does the whole (slow) job once per map and per change of its
files; lookups then touch only the ``NetworkTable``. Precedence, most
specific first: the undefined IPv4-like spaces, ``nets`` (longest prefix),
``asn_map`` (the AS number an ASN database gives), then geography from
``geoip2_db``, then the map's default.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pygdnsd.config.vscf import ConfigHash, parse_file
from pygdnsd.errors import ConfigError
from pygdnsd.plugins.geoip.addresses import (
    UNDEFINED_SPACES,
    V4_DEPTH,
    lookup_key,
    network_text,
    parse_network,
    scope_of,
)
from pygdnsd.plugins.geoip.config import MapSpec, NetsEntry, read_nets
from pygdnsd.plugins.geoip.decisions import Answers
from pygdnsd.plugins.geoip.locations import MAXMIND, NOWHERE
from pygdnsd.plugins.geoip.mmdb import V4_PATH, Database, DatabaseError
from pygdnsd.plugins.geoip.networks import (
    MIXED,
    UNDEFINED,
    Leaf,
    NetworkTable,
    Overlay,
    Ref,
    build_table,
    walk,
)

log = logging.getLogger("gdnsd")


class MapDataError(Exception):
    """A map's data cannot be loaded; the message names the map and the file.

    ``where`` is the config position of the entry at fault, when one is.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


@dataclass(frozen=True, eq=False)
class MapTable:
    """What a map answers from: its table and the datacenter lists the table's values number.

    ``answers`` are the geoip answers remembered from this table
    (``decisions``): the one mutable part, so they go when the table goes.
    """

    table: NetworkTable
    dclists: tuple[tuple[int, ...], ...]
    answers: Answers = field(default_factory=dict, repr=False)

    def lookup(self, packed: bytes) -> tuple[int, int]:
        """(datacenter list number, client-subnet scope) for a client address, 4 or 16 bytes."""
        if len(packed) == 4:
            # IPv4, most queries: ``lookup_key``, ``NetworkTable.find`` and ``scope_of`` inlined
            # (a third of the lookup's time, measured on the bench geoip case).
            table = self.table
            key = int.from_bytes(packed, "big")
            firsts = table.v4_firsts
            bucket = key >> 16
            i = bisect.bisect_right(table.starts, key, firsts[bucket], firsts[bucket + 1]) - 1
            depth = table.lengths[i]
            return table.values[i], depth - V4_DEPTH if depth > V4_DEPTH else 0
        key, form = lookup_key(packed)
        value, depth = self.table.find(key)
        return value, scope_of(depth, form)


class _Dclists:
    def __init__(self) -> None:
        self.lists: list[tuple[int, ...]] = []
        self.numbers: dict[tuple[int, ...], int] = {}

    def number(self, dcs: tuple[int, ...]) -> int:
        found = self.numbers.get(dcs)
        if found is None:
            found = self.numbers[dcs] = len(self.lists)
            self.lists.append(dcs)
        return found


class _Flat:
    """No database: the map's default everywhere."""

    def __init__(self, default: int) -> None:
        self.default = default

    @property
    def root(self) -> Ref:
        return 0

    def split(self, ref: Ref, depth: int) -> tuple[Ref, Ref] | None:
        return None

    def value(self, ref: Ref, addr: int) -> int:
        return self.default

    def under(self, ref: Ref, depth: int, addr: int, leaves: list[Leaf]) -> int:
        return self.default


class _Geographic:
    """A location database: each record's place, through the map, to a datacenter list."""

    def __init__(self, spec: MapSpec, db: Database, dclists: _Dclists, default: int) -> None:
        self.spec = spec
        self.db = db
        self.dclists = dclists
        self.default = default
        kind = db.info.database_type
        self.city_level = "City" in kind or spec.layout != MAXMIND
        if spec.geography.auto and not self.city_level:
            raise MapDataError(
                f"{spec.label()}: auto_dc_coords: GeoIP2 DB '{db.info.path}' is not a "
                "City-level database and this map uses auto_dc_coords"
            )
        if not self.city_level and "Country" not in kind:
            log.warning(
                "%s: Assuming GeoIP2 database '%s' has standard MaxMind Country data, "
                "but type is actually '%s'",
                spec.label(),
                db.info.path,
                kind,
            )
        self.values: dict[int, int] = {}

    @property
    def root(self) -> Ref:
        return self.db.root

    def split(self, ref: Ref, depth: int) -> tuple[Ref, Ref] | None:
        assert isinstance(ref, int)
        return self.db.children(ref, depth) if self.db.is_internal(ref) else None

    def value(self, ref: Ref, addr: int) -> int:
        assert isinstance(ref, int)
        if self.db.is_empty(ref):
            return self.default
        found = self.values.get(ref)
        if found is None:
            place = self.spec.layout.locate(self.db.record(ref, addr), self.city_level)
            found = self.values[ref] = self.dclists.number(self.spec.geography.choose(place))
        return found

    def under(self, ref: Ref, depth: int, addr: int, leaves: list[Leaf]) -> int:
        """``walk`` with ``split`` and ``value`` inlined: what loading a database costs.

        Per node it reads both children and merges their values, all in
        local variables: the bench's GeoLite2 Country map (364,176 nodes) took
        0.89 s through ``split``/``value`` per node, 0.69 s this way, in one
        run (``bench/run load-city`` times a City database).
        """
        assert isinstance(ref, int)
        if ref == V4_PATH:
            return walk(self, ref, depth, addr, leaves)
        if not self.db.is_internal(ref):
            return self.value(ref, addr)
        lefts, rights = self.db.node_arrays()
        count = self.db.info.node_count
        values = self.values
        value = self.value
        default = self.default
        append = leaves.append

        def region(node: int, depth: int, addr: int) -> int:
            # ``node`` is internal, at ``depth`` < 128.
            half = 1 << (127 - depth)
            deeper = depth + 1
            child = lefts[node]
            if child < count:
                if deeper == 128:
                    raise DatabaseError(f"GeoIP2 database '{self.db.info.path}': search tree deeper than 128 bits")
                left = region(child, deeper, addr)
            elif child == count:
                left = default
            else:
                left = values.get(child, MIXED)
                if left == MIXED:
                    left = value(child, addr)
            child = rights[node]
            if child < count:
                if deeper == 128:
                    raise DatabaseError(f"GeoIP2 database '{self.db.info.path}': search tree deeper than 128 bits")
                right = region(child, deeper, addr | half)
            elif child == count:
                right = default
            else:
                right = values.get(child, MIXED)
                if right == MIXED:
                    right = value(child, addr | half)
            if left == right and left != MIXED:
                return left
            if left != MIXED:
                append((addr, deeper, left))
            if right != MIXED:
                append((addr | half, deeper, right))
            return MIXED

        try:
            return region(ref, depth, addr)
        except DatabaseError:
            raise
        except Exception as exc:  # a corrupt tree surfaces as any error of the reader
            raise DatabaseError(f"GeoIP2 database '{self.db.info.path}': bad search tree: {exc}") from None
        finally:
            # ``region`` calls itself through its closure: a reference cycle that kept
            # ``leaves`` (4.4M tuples for a City map), the node arrays and the reader
            # alive until a full collection, and for good once a reload froze them
            # (``daemon.gc_freeze``): measured, 570 MB more per City reload.
            region = _walked


def _walked(node: int, depth: int, addr: int) -> int:
    """What ``_Geographic.under``'s ``region`` becomes once the walk is over (see there)."""
    raise AssertionError("the walk is over")


class _AsnOver:
    """An ASN database's ``asn_map`` answers first; where it has none, ``below`` does."""

    def __init__(self, spec: MapSpec, db: Database, under: _Flat | _Geographic, dclists: _Dclists) -> None:
        self.spec = spec
        self.db = db
        self.below = under
        self.dclists = dclists
        self.values: dict[int, int | None] = {}

    @property
    def root(self) -> Ref:
        return (self.db.root, self.below.root)

    def split(self, ref: Ref, depth: int) -> tuple[Ref, Ref] | None:
        assert isinstance(ref, tuple)
        asn, geo = ref
        asn_halves = self.db.children(asn, depth) if self.db.is_internal(asn) else None
        geo_halves = self.below.split(geo, depth)
        if asn_halves is None and geo_halves is None:
            return None
        left_asn, right_asn = asn_halves or (asn, asn)
        left_geo, right_geo = geo_halves or (geo, geo)
        return (left_asn, left_geo), (right_asn, right_geo)

    def under(self, ref: Ref, depth: int, addr: int, leaves: list[Leaf]) -> int:
        return walk(self, ref, depth, addr, leaves)

    def value(self, ref: Ref, addr: int) -> int:
        assert isinstance(ref, tuple)
        asn, geo = ref
        if not self.db.is_empty(asn):
            if asn not in self.values:
                number = _asn_number(self.db.record(asn, addr))
                dcs = self.spec.asn_map.get(number) if number is not None else None
                self.values[asn] = None if dcs is None else self.dclists.number(dcs)
            found = self.values[asn]
            if found is not None:
                return found
        return self.below.value(geo, addr)


def _asn_number(record: object) -> int | None:
    """The AS number of a GeoLite2-ASN record (``autonomous_system_number``)."""
    if isinstance(record, dict):
        number = record.get("autonomous_system_number")
        if isinstance(number, int) and not isinstance(number, bool):
            return number
    return None


def open_database(spec: MapSpec, path: Path, key: str) -> Database:
    try:
        db = Database(path)
    except DatabaseError as exc:
        raise MapDataError(f"{spec.label()}: {key}: {exc}") from None
    info = db.info
    log.info(
        "%s: Loading GeoIP2 database '%s': Type: %s, IPVersion: %d",
        spec.label(),
        path,
        info.database_type,
        info.ip_version,
    )
    return db


def read_nets_file(spec: MapSpec, path: Path) -> tuple[NetsEntry, ...]:
    try:
        data = parse_file(path)
    except (OSError, ConfigError) as exc:
        raise MapDataError(f"{spec.label()}: (Re-)loading nets file '{path}' failed: {exc}") from None
    if not isinstance(data, ConfigHash):
        raise MapDataError(
            f"{spec.label()}: (Re-)loading nets file '{path}' failed: "
            "file cannot be an array of values"
        )
    numbers = {dc: i for i, dc in enumerate(spec.datacenters)}
    try:
        return read_nets(data, spec.label(), numbers)
    except ConfigError as exc:
        raise MapDataError(f"{spec.label()}: parsing nets file '{path}' failed: {exc}") from None


def overlay(spec: MapSpec, entries: Sequence[NetsEntry], dclists: _Dclists) -> list[Overlay]:
    """The nets entries and the undefined spaces as overlays, sorted, one per network."""
    found: dict[tuple[int, int], Overlay] = {}
    for entry in entries:
        try:
            net = parse_network(entry.text)
        except ValueError as exc:
            raise MapDataError(
                f"{spec.label()}: nets entry '{entry.text}' {exc}", entry.where
            ) from None
        if net.cleared_bits:
            log.warning(
                "%s: input network %s had illegal bits beyond mask, which were cleared",
                spec.label(),
                entry.text,
            )
        value = dclists.number(entry.dclist)
        key = (net.start, net.length)
        earlier = found.get(key)
        if earlier is not None:
            # The first one written wins, as in gdnsd 3.8.1 (its page says "arbitrary").
            if earlier.value != value:
                log.warning(
                    "%s nets: Exact duplicate networks with conflicting dclists at %s",
                    spec.label(),
                    network_text(net.start, net.length),
                )
            continue
        found[key] = Overlay(net.start, net.length, value)
    for start, length in UNDEFINED_SPACES:
        found[(start, length)] = Overlay(start, length, UNDEFINED)
    return sorted(found.values(), key=lambda o: (o.start, o.length))


def load_table(spec: MapSpec) -> MapTable:
    """Read the map's files and build its table; MapDataError names the file that failed."""
    dclists = _Dclists()
    default = dclists.number(spec.geography.choose(NOWHERE))
    nets = spec.nets
    if spec.nets_file is not None:
        nets = read_nets_file(spec, spec.nets_file)
    opened: list[Database] = []
    try:
        base: _Flat | _Geographic | _AsnOver = _Flat(default)
        if spec.database is not None:
            db = open_database(spec, spec.database, "geoip2_db")
            opened.append(db)
            if spec.geography.top.entries or spec.geography.auto or spec.layout != MAXMIND:
                base = _Geographic(spec, db, dclists, default)
            else:
                log.info(
                    "%s: not processing GeoIP2 database '%s': no auto_dc_coords and no "
                    "actual 'map', therefore nothing to do",
                    spec.label(),
                    spec.database,
                )
        if spec.asn_database is not None:
            asn_db = open_database(spec, spec.asn_database, "asn_db")
            opened.append(asn_db)
            base = _AsnOver(spec, asn_db, base, dclists) if not isinstance(base, _AsnOver) else base
        layers = overlay(spec, nets, dclists)
        try:
            table = build_table(base, layers)
        except DatabaseError as exc:
            raise MapDataError(f"{spec.label()}: {exc}") from None
    finally:
        for db in opened:
            db.close()
    log.info(
        "plugin_geoip: map '%s' runtime db updated. nets: %d dclists: %d",
        spec.name,
        len(table),
        len(dclists.lists),
    )
    return MapTable(table, tuple(dclists.lists))
