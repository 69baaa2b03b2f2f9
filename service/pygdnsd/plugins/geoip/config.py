"""Reading the geoip plugin's ``maps`` stanza (gdnsd-plugin-geoip(8), 3.8.1's keys and defaults).

Every error names the config file and line, the map and the key, as in
``config:12: plugin geoip: map 'prod': auto_dc_limit must be ...``. Keys
gdnsd 3.8.1 rejects are rejected with the same words (``invalid config
key``), naming what replaced them where that helps an operator.

pygdnsd's additions (gdnsd issues #200 and #250), all optional:
``asn_db`` and ``asn_map`` (AS numbers -> datacenter lists, consulted after
``nets`` and before geography) and ``layout`` (record paths of another
vendor's database).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pygdnsd.config.scalars import c_string, strtoul
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, ConfigValue
from pygdnsd.errors import ConfigError
from pygdnsd.plugins.geoip.locations import AUTO, MAXMIND, Choice, Geography, Layout, Level

MAP_KEYS = (
    "geoip2_db",
    "datacenters",
    "map",
    "nets",
    "auto_dc_coords",
    "auto_dc_limit",
    "ignore_ecs",
    "asn_db",
    "asn_map",
    "layout",
)
# Keys of gdnsd 2 that 3.8.1 refuses, and what an operator should do instead.
REMOVED_KEYS = {
    "geoip2_db_v4_overlay": "gdnsd 3 reads one database per map: merge the IPv4 data into it",
    "city_region": "gdnsd 3 maps subdivisions by their ISO 3166-2 codes in 'map'",
    "city_no_region": "gdnsd 3 maps subdivisions by their ISO 3166-2 codes in 'map'",
    "geoip_db": "GeoIP1 (.dat) databases are not supported: use 'geoip2_db'",
    "geoip_db_v4_overlay": "GeoIP1 (.dat) databases are not supported: use 'geoip2_db'",
}
LAYOUT_KEYS = (
    "continent",
    "country",
    "subdivisions",
    "subdivision_code",
    "subdivision",
    "city",
    "latitude",
    "longitude",
)
MAX_DATACENTERS = 254


@dataclass(frozen=True)
class NetsEntry:
    text: str  # the key as written, for messages
    where: str  # file:line
    dclist: tuple[int, ...]


@dataclass(frozen=True)
class MapSpec:
    """One map as configured; the files it names are read by ``tables``."""

    name: str
    where: str  # file:line of the map, and the prefix of its messages
    datacenters: tuple[str, ...]
    geography: Geography
    database: Path | None = None
    nets: tuple[NetsEntry, ...] = ()
    nets_file: Path | None = None
    ignore_ecs: bool = False
    layout: Layout = MAXMIND
    asn_database: Path | None = None
    asn_map: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def files(self) -> tuple[Path, ...]:
        """The files whose replacement changes this map's answers (watched while serving)."""
        named = (self.database, self.nets_file, self.asn_database)
        return tuple(p for p in named if p is not None)

    def label(self) -> str:
        return f"plugin_geoip: map '{self.name}'"


def geoip_dir(cfgdir: Path) -> Path:
    return cfgdir / "geoip"


def _file(value: ConfigValue, where: str, key: str, base: Path) -> Path:
    if not isinstance(value, ConfigScalar) or not c_string(value):
        raise ConfigError(f"{where}: '{key}' must have a non-empty string value")
    path = Path(c_string(value))
    return path if path.is_absolute() else base / path


def _bool(value: ConfigValue, where: str, key: str) -> bool:
    text = c_string(value).lower() if isinstance(value, ConfigScalar) else ""
    if text not in ("true", "false"):
        raise ConfigError(f"{where}: value for '{key}' must be 'true' or 'false'")
    return text == "true"


def _pos(conf: ConfigHash, key: str) -> str:
    return str(conf.key_pos.get(key, conf.pos))


def read_map(name: str, conf: ConfigValue, where: str, cfgdir: Path) -> MapSpec:
    """One entry of ``maps``; ``where`` is the position of its key."""
    label = f"plugin_geoip: map '{name}'"
    if not isinstance(conf, ConfigHash):
        raise ConfigError(f"{where}: plugin geoip: value for map '{name}' must be a hash")
    for key in conf:
        if key not in MAP_KEYS:
            hint = REMOVED_KEYS.get(key)
            raise ConfigError(
                f"{_pos(conf, key)}: {label}: invalid config key '{key}'"
                + (f" ({hint})" if hint else "")
            )
    base = geoip_dir(cfgdir)
    datacenters = _datacenters(conf, where, label)
    numbers = {dc: i for i, dc in enumerate(datacenters)}
    coords = _coords(conf, label, numbers) if "auto_dc_coords" in conf else {}
    limit = 3
    if "auto_dc_limit" in conf:
        value = conf["auto_dc_limit"]
        parsed = strtoul(c_string(value)) if isinstance(value, ConfigScalar) else None
        if parsed is None:
            raise ConfigError(
                f"{_pos(conf, 'auto_dc_limit')}: {label}: "
                "auto_dc_limit must be a single unsigned integer value"
            )
        limit = parsed
    database = None
    if "geoip2_db" in conf:
        database = _file(conf["geoip2_db"], f"{_pos(conf, 'geoip2_db')}: {label}", "geoip2_db", base)
    top = Level()
    if "map" in conf:
        stanza = conf["map"]
        if not isinstance(stanza, ConfigHash):
            raise ConfigError(f"{_pos(conf, 'map')}: {label}: 'map' stanza must be a hash")
        if database is None:
            raise ConfigError(f"{_pos(conf, 'map')}: {label}: 'map' stanza requires 'geoip2_db'")
        top = _level(stanza, label, numbers, bool(coords))
    if top.default is None and coords:
        top = Level(AUTO, top.entries)
    geography = Geography(top, tuple(range(len(datacenters))), coords, limit)
    nets: tuple[NetsEntry, ...] = ()
    nets_file = None
    if "nets" in conf:
        value = conf["nets"]
        if isinstance(value, ConfigHash):
            nets = read_nets(value, label, numbers)
        elif isinstance(value, ConfigScalar):
            nets_file = _file(value, f"{_pos(conf, 'nets')}: {label}", "nets", base)
        else:
            raise ConfigError(
                f"{_pos(conf, 'nets')}: {label}: "
                "'nets' stanza must be a hash of direct entries or a filename"
            )
    asn_database = None
    asn_map: dict[int, tuple[int, ...]] = {}
    if "asn_db" in conf:
        asn_database = _file(conf["asn_db"], f"{_pos(conf, 'asn_db')}: {label}", "asn_db", base)
    if "asn_map" in conf:
        if asn_database is None:
            raise ConfigError(f"{_pos(conf, 'asn_map')}: {label}: 'asn_map' requires 'asn_db'")
        asn_map = _asn_map(conf["asn_map"], label, numbers)
    layout = _layout(conf["layout"], label) if "layout" in conf else MAXMIND
    return MapSpec(
        name,
        where,
        datacenters,
        geography,
        database,
        nets,
        nets_file,
        _bool(conf["ignore_ecs"], f"{_pos(conf, 'ignore_ecs')}: {label}", "ignore_ecs")
        if "ignore_ecs" in conf
        else False,
        layout,
        asn_database,
        asn_map,
    )


def _datacenters(conf: ConfigHash, where: str, label: str) -> tuple[str, ...]:
    value = conf.get("datacenters")
    if value is None:
        raise ConfigError(f"{where}: {label}: missing required 'datacenters' array")
    items = list(value) if isinstance(value, ConfigList) else [value]
    if not items or not all(isinstance(i, ConfigScalar) for i in items):
        raise ConfigError(
            f"{_pos(conf, 'datacenters')}: {label}: "
            "'datacenters' must be an array of one or more strings"
        )
    names = tuple(c_string(i) for i in items if isinstance(i, ConfigScalar))
    if len(names) > MAX_DATACENTERS:
        raise ConfigError(
            f"{_pos(conf, 'datacenters')}: {label}: {len(names)} datacenters is too many, "
            f"this code only supports up to {MAX_DATACENTERS}"
        )
    if AUTO in names:
        raise ConfigError(f"{_pos(conf, 'datacenters')}: {label}: datacenter name 'auto' is illegal")
    return names


def _coords(
    conf: ConfigHash, label: str, numbers: Mapping[str, int]
) -> dict[int, tuple[float, float]]:
    stanza = conf["auto_dc_coords"]
    if not isinstance(stanza, ConfigHash):
        raise ConfigError(
            f"{_pos(conf, 'auto_dc_coords')}: {label}: auto_dc_coords must be a key-value hash"
        )
    out: dict[int, tuple[float, float]] = {}
    for dc, value in stanza.items():
        where = f"{_pos(stanza, dc)}: {label}"
        if dc not in numbers:
            raise ConfigError(
                f"{where}: auto_dc_coords key '{dc}' not matched from 'datacenters' list"
            )
        pair = list(value) if isinstance(value, ConfigList) else []
        if len(pair) != 2 or not all(isinstance(x, ConfigScalar) for x in pair):
            raise ConfigError(
                f"{where}: auto_dc_coords value for datacenter '{dc}' "
                "must be an array of two values"
            )
        try:
            lat, lon = float(c_string(pair[0])), float(c_string(pair[1]))  # type: ignore[arg-type]
        except ValueError:
            lat, lon = 1000.0, 1000.0
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ConfigError(
                f"{where}: auto_dc_coords value for datacenter '{dc}' "
                "must be a legal latitude and longitude in decimal degrees"
            )
        out[numbers[dc]] = (lat, lon)
    return out


def dclist(value: ConfigValue, where: str, label: str, numbers: Mapping[str, int]) -> tuple[int, ...]:
    """A datacenter list (an array, or one name) as datacenter numbers."""
    items = list(value) if isinstance(value, ConfigList) else [value]
    out = []
    for item in items:
        if not isinstance(item, ConfigScalar):
            raise ConfigError(
                f"{where}: {label}: datacenter lists must be an array of one or more "
                "datacenter name strings"
            )
        name = c_string(item)
        if name not in numbers:
            raise ConfigError(f"{item.pos}: {label}: datacenter name '{name}' invalid ...")
        out.append(numbers[name])
    return tuple(out)


def _choice(
    value: ConfigValue, where: str, label: str, numbers: Mapping[str, int], auto: bool
) -> Choice:
    if auto and isinstance(value, ConfigScalar) and c_string(value) == AUTO:
        return AUTO
    return dclist(value, where, label, numbers)


def _level(stanza: ConfigHash, label: str, numbers: Mapping[str, int], auto: bool) -> Level:
    default: Choice | None = None
    entries: dict[str, Choice | Level] = {}
    for key, value in stanza.items():
        where = _pos(stanza, key)
        if key == "default":
            default = _choice(value, where, label, numbers, auto)
        elif isinstance(value, ConfigHash):
            entries[key] = _level(value, label, numbers, auto)
        else:
            entries[key] = _choice(value, where, label, numbers, auto)
    return Level(default, entries)


def read_nets(stanza: ConfigHash, label: str, numbers: Mapping[str, int]) -> tuple[NetsEntry, ...]:
    """A ``nets`` hash (inline, or a nets file's contents): network text -> datacenter list."""
    return tuple(
        NetsEntry(key, _pos(stanza, key), dclist(value, _pos(stanza, key), label, numbers))
        for key, value in stanza.items()
    )


def _asn_map(value: ConfigValue, label: str, numbers: Mapping[str, int]) -> dict[int, tuple[int, ...]]:
    if not isinstance(value, ConfigHash):
        raise ConfigError(f"{value.pos}: {label}: 'asn_map' must be a hash of AS numbers")
    out: dict[int, tuple[int, ...]] = {}
    for key, item in value.items():
        where = _pos(value, key)
        text = key[2:] if key[:2].upper() == "AS" else key
        if not text.isdigit() or int(text) >= 1 << 32:
            raise ConfigError(f"{where}: {label}: asn_map key '{key}' is not an AS number")
        out[int(text)] = dclist(item, where, label, numbers)
    return out


def _layout(value: ConfigValue, label: str) -> Layout:
    if not isinstance(value, ConfigHash):
        raise ConfigError(f"{value.pos}: {label}: 'layout' must be a hash of record paths")
    paths: dict[str, tuple[str, ...]] = {}
    for key, item in value.items():
        where = _pos(value, key)
        if key not in LAYOUT_KEYS:
            raise ConfigError(
                f"{where}: {label}: layout key '{key}' unknown (known: {', '.join(LAYOUT_KEYS)})"
            )
        if not isinstance(item, ConfigScalar):
            raise ConfigError(f"{where}: {label}: layout '{key}' must be a dotted record path")
        text = c_string(item)
        paths[key] = tuple(text.split(".")) if text else ()
    return Layout(**paths)
