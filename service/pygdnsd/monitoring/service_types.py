"""The ``service_types`` config section: how to check a kind of service.

Keys, defaults and ranges are gdnsd 3.8.1's (checked with its checkconf),
which differ from the man page: ``interval`` is 2..3600 (default 10),
``timeout`` 1..300 (default interval/2) and must be less than ``interval``.
The names ``up`` and ``down`` are built in and cannot be redefined.

gdnsd 3.8.1 refuses a missing or unknown ``plugin`` at once, but checks
the types' other options only once something is monitored at all: with no
monitored resource, a broken type does not stop it.
``parse_service_types(..., defer_errors=True)`` does the same, keeping such
a type as ``Unusable`` (``Monitor.add`` refuses the first one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pygdnsd.config.scalars import c_bool, c_string, strtoul
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, ConfigValue, Position
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.antiflap import Thresholds
from pygdnsd.monitoring.sttl import TTL_MAX

GENERIC_KEYS = ("up_thresh", "ok_thresh", "down_thresh", "interval", "timeout", "plugin")
BUILTIN_TYPES = ("up", "down")


@dataclass(frozen=True)
class TcpConnect:
    port: int


@dataclass(frozen=True)
class HttpStatus:
    port: int = 80
    url_path: str = "/"
    vhost: str | None = None
    ok_codes: tuple[int, ...] = (200,)


@dataclass(frozen=True)
class Extmon:
    cmd: tuple[str, ...]
    direct: bool = False
    max_proc: int = 0


@dataclass(frozen=True)
class Extfile:
    file: Path
    direct: bool = False
    def_ttl: int = TTL_MAX
    def_down: bool = False


@dataclass(frozen=True)
class Fixed:
    """``up``, ``down`` and the ``static`` monitor: a state set once, never checked."""

    down: bool
    ttl: int = TTL_MAX


@dataclass(frozen=True)
class AlwaysDown:
    """The ``null`` monitor: every check fails (through the anti-flap machine)."""


@dataclass(frozen=True)
class Unusable:
    """A type whose options are wrong, refused (with ``problem``) once anything is monitored."""

    problem: str


Check = TcpConnect | HttpStatus | Extmon | Extfile | Fixed | AlwaysDown | Unusable
MONITOR_PLUGINS = ("tcp_connect", "http_status", "extmon", "extfile", "static", "null")


@dataclass(frozen=True)
class ServiceType:
    name: str
    check: Check
    thresholds: Thresholds = field(default_factory=Thresholds)
    timeout: int = 5

    @property
    def interval(self) -> int:
        return self.thresholds.interval


BUILTINS = {
    "up": ServiceType("up", Fixed(down=False)),
    "down": ServiceType("down", Fixed(down=True)),
}


def parse_service_types(
    raw: ConfigHash, state_dir: Path, defer_errors: bool = False
) -> dict[str, ServiceType]:
    """Every service type, the built-in ``up`` and ``down`` included.

    ``defer_errors``: a type with bad options (but a known plugin) becomes
    ``Unusable`` instead of raising, as gdnsd checks it only once it monitors.
    """
    out = dict(BUILTINS)
    for name, value in raw.items():
        where = raw.key_pos.get(name, raw.pos)
        if name in BUILTIN_TYPES:
            raise ConfigError(
                f"{where}: service_types: explicit service type name {name!r} not allowed"
            )
        if not isinstance(value, ConfigHash):
            raise ConfigError(f"{where}: service_types: the value of {name!r} must be a hash")
        out[name] = _service_type(name, value, state_dir, defer_errors)
    return out


def _service_type(
    name: str, conf: ConfigHash, state_dir: Path, defer_errors: bool
) -> ServiceType:
    what = f"service type {name!r}"
    plugin = conf.get("plugin")
    if plugin is None:
        raise ConfigError(f"{conf.pos}: {what}: 'plugin' must be defined")
    plugin_name = _string(conf, "plugin", what)
    if plugin_name not in MONITOR_PLUGINS:
        raise ConfigError(
            f"{conf.key_pos['plugin']}: {what}: no such monitoring plugin {plugin_name!r}"
        )
    try:
        return _checked_service_type(name, plugin_name, conf, what, state_dir)
    except ConfigError as exc:
        if not defer_errors:
            raise
        return ServiceType(name, Unusable(str(exc)))


def _checked_service_type(
    name: str, plugin_name: str, conf: ConfigHash, what: str, state_dir: Path
) -> ServiceType:
    interval = _int(conf, "interval", 2, 3600, 10, what)
    timeout = _int(conf, "timeout", 1, 300, max(1, interval // 2), what)
    if timeout >= interval:
        raise ConfigError(
            f"{conf.key_pos.get('timeout', conf.pos)}: {what}: timeout must be less than interval"
        )
    thresholds = Thresholds(
        up_thresh=_int(conf, "up_thresh", 1, 65535, 20, what),
        ok_thresh=_int(conf, "ok_thresh", 1, 65535, 10, what),
        down_thresh=_int(conf, "down_thresh", 1, 65535, 10, what),
        interval=interval,
    )
    check, own_keys = _check(plugin_name, conf, what, state_dir)
    for key in conf:
        if key not in GENERIC_KEYS and key not in own_keys:
            raise ConfigError(f"{conf.key_pos[key]}: {what}: bad option {key!r}")
    return ServiceType(name, check, thresholds, timeout)


def _check(
    plugin: str, conf: ConfigHash, what: str, state_dir: Path
) -> tuple[Check, tuple[str, ...]]:
    if plugin == "tcp_connect":
        if "port" not in conf:
            raise ConfigError(f"{conf.pos}: {what}: plugin tcp_connect needs a 'port' parameter")
        return TcpConnect(_int(conf, "port", 1, 65535, 0, what)), ("port",)
    if plugin == "http_status":
        codes: tuple[int, ...] = (200,)
        if "ok_codes" in conf:
            codes = tuple(
                _code(item, what) for item in _strings(conf, "ok_codes", what, conf["ok_codes"])
            )
        vhost = _string(conf, "vhost", what) if "vhost" in conf else None
        http = HttpStatus(
            port=_int(conf, "port", 1, 65534, 80, what),
            url_path=_string(conf, "url_path", what) if "url_path" in conf else "/",
            vhost=vhost,
            ok_codes=codes,
        )
        return http, ("port", "url_path", "vhost", "ok_codes")
    if plugin == "extmon":
        if "cmd" not in conf:
            raise ConfigError(f"{conf.pos}: {what}: plugin extmon: option 'cmd' must be defined")
        cmd = tuple(c_string(s) for s in _strings(conf, "cmd", what, conf["cmd"]))
        if not cmd:
            raise ConfigError(f"{conf.key_pos['cmd']}: {what}: option 'cmd' must not be empty")
        direct = _bool(conf, "direct", False, what)
        return Extmon(cmd, direct, _int(conf, "max_proc", 0, 65535, 0, what)), (
            "cmd",
            "direct",
            "max_proc",
        )
    if plugin == "extfile":
        if "file" not in conf:
            raise ConfigError(
                f"{conf.pos}: {what}: plugin extfile: the 'file' option is required and must be a string filename"
            )
        path = Path(_string(conf, "file", what))
        if not path.is_absolute():
            path = state_dir / "extfile" / path
        ext = Extfile(
            file=path,
            direct=_bool(conf, "direct", False, what),
            def_ttl=_int(conf, "def_ttl", 0, TTL_MAX, TTL_MAX, what),
            def_down=_bool(conf, "def_down", False, what),
        )
        return ext, ("file", "direct", "def_ttl", "def_down")
    if plugin == "static":
        state = _string(conf, "state", what).upper() if "state" in conf else "UP"
        if state not in ("UP", "DOWN"):
            raise ConfigError(f"{conf.key_pos['state']}: {what}: 'state' must be UP or DOWN")
        return Fixed(down=state == "DOWN", ttl=_int(conf, "ttl", 0, TTL_MAX, TTL_MAX, what)), (
            "state",
            "ttl",
        )
    if plugin == "null":
        return AlwaysDown(), ()
    raise ConfigError(f"{conf.key_pos['plugin']}: {what}: no such monitoring plugin {plugin!r}")


def _string(conf: ConfigHash, key: str, what: str) -> str:
    value = conf[key]
    if not isinstance(value, ConfigScalar):
        raise ConfigError(f"{value.pos}: {what}: option {key!r} must be a string")
    return c_string(value)


def _strings(conf: ConfigHash, key: str, what: str, value: ConfigValue) -> list[ConfigScalar]:
    items: list[ConfigValue] = list(value) if isinstance(value, ConfigList) else [value]
    out = []
    for item in items:
        if not isinstance(item, ConfigScalar):
            raise ConfigError(f"{item.pos}: {what}: option {key!r} must hold only strings")
        out.append(item)
    return out


def _int(conf: ConfigHash, key: str, low: int, high: int, default: int, what: str) -> int:
    value = conf.get(key)
    if value is None:
        return default
    number = strtoul(value) if isinstance(value, ConfigScalar) else None
    if number is None or not low <= number <= high:
        raise ConfigError(
            f"{_pos(conf, key)}: {what}: option {key!r}: value out of range ({low}, {high})"
        )
    return number


def _bool(conf: ConfigHash, key: str, default: bool, what: str) -> bool:
    value = conf.get(key)
    if value is None:
        return default
    flag = c_bool(value) if isinstance(value, ConfigScalar) else None
    if flag is None:
        raise ConfigError(f"{_pos(conf, key)}: {what}: option {key!r} must be true or false")
    return flag


def _code(item: ConfigScalar, what: str) -> int:
    number = strtoul(item)
    if number is None or not 100 <= number <= 999:
        raise ConfigError(
            f"{item.pos}: {what}: illegal ok_codes value {str(item)!r}, must be numeric http status code (100-999)"
        )
    return number


def _pos(conf: ConfigHash, key: str) -> Position:
    return conf.key_pos.get(key, conf.pos)
