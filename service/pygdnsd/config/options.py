"""The ``config`` file of a gdnsd config dir, read into a frozen ``Config``.

Keys, types, defaults and ranges follow ``man gdnsd.config`` (OPTIONS), with
the edge cases checked against gdnsd 3.8.1's ``checkconf``: e.g. an explicit
``udp_rcvbuf => 0`` is refused although 0 is the default, ``zones_default_ttl``
is limited to 1..2**31-1, and options gdnsd 2.x had are accepted with a
warning (``LEGACY_OPTIONS``).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import cast

from pygdnsd.config.addresses import AddressSpecError, SocketAddress, format_address, resolve_spec
from pygdnsd.config.scalars import c_bool, c_bytes, c_string, strtoul
from pygdnsd.config.vscf import (
    ConfigHash,
    ConfigList,
    ConfigScalar,
    ConfigValue,
    Position,
    parse_file,
)
from pygdnsd.errors import ConfigError

# name: (min, max). Every default is the ``Config`` field's.
INT_OPTIONS: dict[str, tuple[int, int]] = {
    "zones_default_ttl": (1, 2**31 - 1),
    "max_ttl": (3600, 268435455),
    "min_ttl": (0, 86400),
    "max_ncache_ttl": (10, 86400),
    "dns_port": (1, 65535),
    "tcp_threads": (1, 1024),
    "udp_threads": (1, 1024),
    "tcp_clients_per_thread": (16, 65535),
    "tcp_timeout": (5, 1800),
    "tcp_backlog": (0, 65535),
    "tcp_fastopen": (0, 1048576),
    # The default 0 (leave the OS default) cannot be written explicitly.
    "udp_rcvbuf": (4096, 1048576),
    "udp_sndbuf": (4096, 1048576),
    "zones_rfc1035_threads": (1, 1024),
    "max_edns_response": (512, 16384),
    "max_edns_response_v6": (512, 16384),
    "acme_challenge_ttl": (60, 3600),
    "acme_challenge_dns_ttl": (0, 3600),
    "max_nocookie_response": (0, 1024),
    # gdnsd 2's HTTP status listener, given a meaning again (``http_listen``):
    # the port of an address that names none, the cap on clients, and how
    # long one may take (gdnsd 2's defaults and ranges).
    "http_port": (1, 65535),
    "max_http_clients": (1, 65535),
    "http_timeout": (3, 60),
}

BOOL_OPTIONS = frozenset(
    {
        "disable_tcp_dso",
        "zones_strict_data",
        "lock_mem",
        "disable_text_autosplit",
        "edns_client_subnet",
        "experimental_no_chain",
        "disable_cookies",
        # pygdnsd's own: reload zones when files change (gdnsd 3 has no such option).
        "zones_auto_reload",
    }
)

STRING_OPTIONS = (
    "chaos_response",
    "nsid",
    "nsid_ascii",
    "cookie_key_file",
    "run_dir",
    "state_dir",
    # pygdnsd's own additions:
    "pidfile",
)

# gdnsd 2.x options that gdnsd 3.8.1 still accepts (any value) with a warning.
# ``username`` is among them, but pygdnsd gives it a meaning again (privilege drop).
LEGACY_OPTIONS = frozenset(
    {
        "weaker_security",
        "include_optional_ns",
        "realtime_stats",
        "zones_rfc1035_auto",
        "zones_rfc1035_auto_interval",
        "zones_rfc1035_quiesce",
        "zones_strict_startup",
        "max_response",
        "max_cname_depth",
        "max_addtl_rrsets",
        "priority",
        "any_mitigation",
        "plugin_search_path",
        "log_stats",
        "udp_recv_width",
    }
)

OTHER_OPTIONS = frozenset({"listen", "tcp_control", "username", "http_listen", "http_allow"})

KNOWN_OPTIONS = (
    frozenset(INT_OPTIONS) | frozenset(BOOL_OPTIONS) | frozenset(STRING_OPTIONS) | OTHER_OPTIONS
)

LISTEN_BOOL_KEYS = ("tcp_proxy", "tcp_pad")
LISTEN_UDP_KEYS = frozenset({"udp_threads", "udp_rcvbuf", "udp_sndbuf"})

# The file of a config dir this module reads.
CONFIG_FILE = "config"
TOP_LEVEL_KEYS = ("options", "service_types", "plugins")
CHAOS_RESPONSE_MAX = 254
NSID_MAX_BYTES = 128
DEFAULT_RUN_DIR = Path("/run/gdnsd")
PIDFILE_NAME = "gdnsd.pid"
DEFAULT_LISTEN_WARNING = (
    "Defaulting to listen=>any for lack of explicit listen config. Please explicitly "
    "configure it, as default behaviors may change in future releases!"
)


@dataclass(frozen=True, kw_only=True)
class ListenOptions:
    """What every DNS listen address takes from the global options unless its own hash sets it.

    ``Config`` holds the global values, each ``ListenAddress`` the values it
    serves with; these fields are the one declaration of both and of their
    defaults. ``disable_tcp_dso`` is global only (gdnsd refuses it per address).
    """

    udp_threads: int = 2
    tcp_threads: int = 2
    tcp_timeout: int = 37
    tcp_clients_per_thread: int = 256
    tcp_fastopen: int = 256
    tcp_backlog: int = 0
    udp_rcvbuf: int = 0
    udp_sndbuf: int = 0
    disable_tcp_dso: bool = False


@dataclass(frozen=True)
class ListenAddress(ListenOptions):
    """One DNS listen address with the options its sockets and servers use.

    ``tcp_proxy`` and ``tcp_pad`` exist per address only; ``tcp_pad``
    defaults to ``tcp_proxy``'s value when the address's hash sets it.
    """

    host: str
    port: int
    tcp_proxy: bool = False
    tcp_pad: bool = False

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def label(self) -> str:
        return format_address(self.host, self.port)


LISTEN_OPTIONS = tuple(option.name for option in fields(ListenOptions))
# Per-address keys in the hash form of ``listen``, besides ``LISTEN_BOOL_KEYS``.
LISTEN_INT_KEYS = tuple(name for name in LISTEN_OPTIONS if name in INT_OPTIONS)


@dataclass(frozen=True)
class ControlAddress:
    """A ``tcp_control`` listen address and what it permits."""

    host: str
    port: int
    family: int
    chal_ok: bool = False
    ctl_ok: bool = False


@dataclass(frozen=True)
class HttpAddress:
    """An ``http_listen`` address: the status page and metrics are served there."""

    host: str
    port: int
    family: int


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Who may use the HTTP listeners unless ``http_allow`` says otherwise: this host only.
LOOPBACK_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True)
class Config(ListenOptions):
    """Every option of ``man gdnsd.config`` plus pygdnsd's own (pidfile, username, zones_auto_reload).

    Its field defaults are gdnsd's defaults, the only place they are written:
    the reader fills in what a config file leaves out from them (``DEFAULTS``),
    and the settings built from a ``Config`` (``ZoneSettings``,
    ``EngineSettings``) default to them as class attributes (``Config.min_ttl``),
    which is why neither this class nor ``ListenOptions`` has ``slots``.
    """

    cfgdir: Path
    listen: tuple[ListenAddress, ...]
    zones_default_ttl: int = 86400
    max_ttl: int = 3600000
    min_ttl: int = 5
    max_ncache_ttl: int = 10800
    dns_port: int = 53
    tcp_control: tuple[ControlAddress, ...] = ()
    zones_strict_data: bool = False
    zones_rfc1035_threads: int = 2
    lock_mem: bool = False
    disable_text_autosplit: bool = False
    max_edns_response: int = 1232
    max_edns_response_v6: int = 1232
    edns_client_subnet: bool = True
    # gdnsd 3.8.1 answers "gdnsd/3" by default, whatever its man page says.
    chaos_response: bytes = b"gdnsd/3"
    acme_challenge_ttl: int = 600
    acme_challenge_dns_ttl: int = 0
    # Binary NSID, from either ``nsid`` (hex) or ``nsid_ascii``.
    nsid: bytes | None = None
    experimental_no_chain: bool = True
    disable_cookies: bool = False
    max_nocookie_response: int = 0
    cookie_key_file: Path | None = None
    run_dir: Path = DEFAULT_RUN_DIR
    state_dir: Path = Path("/var/lib/gdnsd")
    # Without a ``pidfile`` option: ``run_dir/gdnsd.pid``.
    pidfile: Path = DEFAULT_RUN_DIR / PIDFILE_NAME
    username: str | None = None
    zones_auto_reload: bool = False
    # The HTTP status listener (pygdnsd's, on gdnsd 2's option names): none
    # unless configured, so an upgrade opens no port by itself.
    http_listen: tuple[HttpAddress, ...] = ()
    http_allow: tuple[Network, ...] = LOOPBACK_NETWORKS
    http_port: int = 3506
    max_http_clients: int = 128
    http_timeout: int = 5
    # Raw data for the plugin and monitoring code (each value is a hash).
    service_types: ConfigHash = field(default_factory=lambda: ConfigHash(Position("-", 0)))
    plugins: ConfigHash = field(default_factory=lambda: ConfigHash(Position("-", 0)))
    # Things an operator should hear about (gdnsd logs them as warnings).
    warnings: tuple[str, ...] = ()

    @property
    def zones_dir(self) -> Path:
        return self.cfgdir / "zones"


# Option name -> its default: the ``Config`` field's.
DEFAULTS: dict[str, object] = {
    option.name: option.default for option in fields(Config) if option.default is not MISSING
}


def load_config(cfgdir: Path, strict_data_override: bool = False) -> Config:
    """Read ``cfgdir/config`` (absent means all defaults).

    ``strict_data_override`` (the command line's ``-S``) forces ``zones_strict_data``.
    """
    cfgdir = Path(cfgdir)
    path = cfgdir / CONFIG_FILE
    if path.exists() or path.is_symlink():
        top = parse_file(path)
        if isinstance(top, ConfigList):
            raise ConfigError(
                f"{path}: the main config file cannot be an '[ array ]' at the top level"
            )
    else:
        top = ConfigHash(Position(str(path), 0))
    return config_from_data(cfgdir, top, strict_data_override)


def config_from_data(cfgdir: Path, top: ConfigHash, strict_data_override: bool = False) -> Config:
    """A ``Config`` from the parsed top-level hash of a config file."""
    for key in top:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{top.key_pos[key]}: invalid top-level config key {key!r} "
                f"(allowed: {', '.join(TOP_LEVEL_KEYS)})"
            )
    sections = {name: _hash_section(top, name) for name in TOP_LEVEL_KEYS}
    for name in ("service_types", "plugins"):
        for key, value in sections[name].items():
            if not isinstance(value, ConfigHash):
                raise ConfigError(f"{value.pos}: {name}: the value of {key!r} must be a hash")
    settings = _read_options(sections["options"])
    if strict_data_override:
        settings["zones_strict_data"] = True
    return Config(
        cfgdir=cfgdir,
        service_types=sections["service_types"],
        plugins=sections["plugins"],
        **settings,  # type: ignore[arg-type]
    )


def _hash_section(top: ConfigHash, name: str) -> ConfigHash:
    value = top.get(name)
    if value is None:
        return ConfigHash(Position(top.pos.path, 0))
    if not isinstance(value, ConfigHash):
        raise ConfigError(f"{value.pos}: config key {name!r}: wrong type (must be a hash)")
    return value


# -- options -------------------------------------------------------------


def _read_options(options: ConfigHash) -> dict[str, object]:
    warnings: list[str] = []
    out: dict[str, object] = {}
    for key, value in options.items():
        if key in LEGACY_OPTIONS:
            warnings.append(
                f"{value.pos}: config option {key} is no longer supported and is ignored"
            )
        elif key not in KNOWN_OPTIONS:
            raise ConfigError(f"{options.key_pos[key]}: invalid options key {key!r}")
    for key, (low, high) in INT_OPTIONS.items():
        given = options.get(key)
        out[key] = DEFAULTS[key] if given is None else read_int(key, given, low, high)
    for key in BOOL_OPTIONS:
        given = options.get(key)
        out[key] = DEFAULTS[key] if given is None else read_bool(key, given)
    _check_ttl_order(out)
    nocookie = out["max_nocookie_response"]
    if isinstance(nocookie, int) and 0 < nocookie < 128:
        value = options["max_nocookie_response"]
        raise ConfigError(
            f"{value.pos}: option 'max_nocookie_response' ({nocookie}) must be zero, "
            "or in the range 128 - 1024"
        )
    out.update(_read_strings(options, warnings))
    dns_port = out["dns_port"]
    assert isinstance(dns_port, int)
    out["listen"] = _read_listen(options, dns_port, out, warnings)
    control = options.get("tcp_control")
    out["tcp_control"] = () if control is None else _read_tcp_control(control)
    http_port = out["http_port"]
    assert isinstance(http_port, int)
    http_listen = options.get("http_listen")
    out["http_listen"] = () if http_listen is None else _read_http_listen(http_listen, http_port)
    if http_listen is not None:
        _refuse_shared_ports(
            cast(tuple[HttpAddress, ...], out["http_listen"]),
            [*cast(tuple[ListenAddress, ...], out["listen"]), *cast(tuple[ControlAddress, ...], out["tcp_control"])],
            http_listen.pos,
        )
    http_allow = options.get("http_allow")
    out["http_allow"] = DEFAULTS["http_allow"] if http_allow is None else _read_http_allow(http_allow)
    if out["experimental_no_chain"] is False:
        warnings.append(
            "experimental_no_chain is disabled: gdnsd asks for a bug report explaining why "
            "this was necessary"
        )
    out["warnings"] = tuple(warnings)
    return out


def _check_ttl_order(out: dict[str, object]) -> None:
    min_ttl, max_ttl, max_ncache = out["min_ttl"], out["max_ttl"], out["max_ncache_ttl"]
    assert isinstance(min_ttl, int) and isinstance(max_ttl, int) and isinstance(max_ncache, int)
    if max_ttl < min_ttl:
        raise ConfigError(
            f"option 'max_ttl' ({max_ttl}) cannot be smaller than 'min_ttl' ({min_ttl})"
        )
    if max_ncache < min_ttl:
        raise ConfigError(
            f"option 'max_ncache_ttl' ({max_ncache}) cannot be smaller than 'min_ttl' ({min_ttl})"
        )


def _read_strings(options: ConfigHash, warnings: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    strings = {key: read_string(key, options[key]) for key in STRING_OPTIONS if key in options}
    if "chaos_response" in strings:
        value = c_bytes(strings["chaos_response"])
        if len(value) > CHAOS_RESPONSE_MAX:
            raise ConfigError(
                f"{options['chaos_response'].pos}: option 'chaos_response' must be a string "
                f"less than 255 characters long (is {len(value)})"
            )
        out["chaos_response"] = value
    if "nsid" in strings and "nsid_ascii" in strings:
        raise ConfigError(f"{options['nsid'].pos}: only one of 'nsid_ascii' or 'nsid' can be set")
    if "nsid" in strings:
        out["nsid"] = _nsid_hex(strings["nsid"], options["nsid"].pos)
    if "nsid_ascii" in strings:
        out["nsid"] = _nsid_ascii(strings["nsid_ascii"], options["nsid_ascii"].pos)
    if "cookie_key_file" in strings:
        out["cookie_key_file"] = Path(c_string(strings["cookie_key_file"]))
    run_dir = Path(c_string(strings["run_dir"])) if "run_dir" in strings else DEFAULT_RUN_DIR
    out["run_dir"] = run_dir
    if "state_dir" in strings:
        out["state_dir"] = Path(c_string(strings["state_dir"]))
    pidfile = strings.get("pidfile")
    out["pidfile"] = Path(c_string(pidfile)) if pidfile is not None else run_dir / PIDFILE_NAME
    username = options.get("username")
    if isinstance(username, ConfigScalar):
        out["username"] = c_string(username)
    elif username is not None:
        warnings.append(f"{username.pos}: option 'username' is not a string and is ignored")
    return out


def _nsid_hex(text: str, pos: Position) -> bytes:
    hex_text = c_string(text)
    if (
        not 2 <= len(hex_text) <= 2 * NSID_MAX_BYTES
        or len(hex_text) % 2
        or not all(c in "0123456789abcdefABCDEF" for c in hex_text)
    ):
        raise ConfigError(
            f"{pos}: option 'nsid' must be a hex string up to 256 characters "
            "(128 encoded bytes) long"
        )
    return bytes.fromhex(hex_text)


def _nsid_ascii(text: str, pos: Position) -> bytes:
    raw = c_bytes(text)
    if not 1 <= len(raw) <= NSID_MAX_BYTES or not all(0x20 <= b <= 0x7E for b in raw):
        raise ConfigError(
            f"{pos}: option 'nsid_ascii' must be a string of printable ASCII characters "
            "up to 128 bytes long"
        )
    return raw


# -- typed values -----------------------------------------------------------


def read_int(key: str, value: ConfigValue, low: int, high: int) -> int:
    """An integer option in ``low..high`` (gdnsd's strtoul reading)."""
    number = strtoul(value) if isinstance(value, ConfigScalar) else None
    if number is None:
        raise ConfigError(f"{value.pos}: option {key!r}: value must be a positive integer")
    if not low <= number <= high:
        raise ConfigError(
            f"{value.pos}: option {key!r}: value {number} out of range ({low}, {high})"
        )
    return number


def read_bool(key: str, value: ConfigValue) -> bool:
    """A boolean option: "true" or "false" in any case."""
    result = c_bool(value) if isinstance(value, ConfigScalar) else None
    if result is None:
        raise ConfigError(f"{value.pos}: option {key!r}: value must be 'true' or 'false'")
    return result


def read_string(key: str, value: ConfigValue) -> str:
    if not isinstance(value, ConfigScalar):
        raise ConfigError(f"{value.pos}: option {key!r}: wrong type (should be a string)")
    return str(value)


# -- listen ------------------------------------------------------------------


def _read_listen(
    options: ConfigHash, dns_port: int, globals_: dict[str, object], warnings: list[str]
) -> tuple[ListenAddress, ...]:
    defaults = {key: globals_[key] for key in LISTEN_OPTIONS}
    value = options.get("listen")
    if value is None:
        warnings.append(DEFAULT_LISTEN_WARNING)
        return _listen_any(dns_port, defaults)
    if value == "any":
        return _listen_any(dns_port, defaults)
    specs = _address_specs(
        value,
        not_a_string="option 'listen': all listen specs must be strings",
        not_a_hash="DNS listen address {key!r}: per-address options must be a hash",
    )
    if not specs:
        # gdnsd 3.8.1 aborts on this (allocation of 0 listeners).
        raise ConfigError(f"{value.pos}: option 'listen': no addresses given")
    return tuple(_listen_address(spec, dns_port, defaults, extra) for spec, extra in specs)


def _listen_any(dns_port: int, defaults: dict[str, object]) -> tuple[ListenAddress, ...]:
    return (
        ListenAddress("0.0.0.0", dns_port, **defaults),  # type: ignore[arg-type]
        ListenAddress("::", dns_port, **defaults),  # type: ignore[arg-type]
    )


def _address_specs(
    value: ConfigValue, not_a_string: str, not_a_hash: str
) -> list[tuple[ConfigScalar, ConfigHash | None]]:
    """(spec, its own options or None) for each address of ``listen`` or ``tcp_control``.

    Both take one spec, a list of specs, or a hash of spec => per-address
    options; the messages (``not_a_hash`` may name the ``{key}``) are the
    option's own, as gdnsd words them.
    """
    if isinstance(value, ConfigScalar):
        return [(value, None)]
    if isinstance(value, ConfigList):
        for item in value:
            if not isinstance(item, ConfigScalar):
                raise ConfigError(f"{item.pos}: {not_a_string}")
        return [(item, None) for item in value if isinstance(item, ConfigScalar)]
    specs: list[tuple[ConfigScalar, ConfigHash | None]] = []
    for key, per_address in value.items():
        if not isinstance(per_address, ConfigHash):
            raise ConfigError(f"{per_address.pos}: {not_a_hash.format(key=key)}")
        specs.append((ConfigScalar(key, value.key_pos[key]), per_address))
    return specs


def _resolve(what: str, spec: ConfigScalar, default_port: int) -> SocketAddress:
    try:
        return resolve_spec(spec, default_port)
    except AddressSpecError as exc:
        raise ConfigError(
            f"{spec.pos}: could not process {what} address spec {str(spec)!r}: {exc}"
        ) from exc


def _listen_address(
    spec: ConfigScalar, dns_port: int, defaults: dict[str, object], per_address: ConfigHash | None
) -> ListenAddress:
    address = _resolve("listen", spec, dns_port)
    settings = dict(defaults)
    if per_address is not None:
        proxy_value = per_address.get("tcp_proxy")
        proxy = read_bool("tcp_proxy", proxy_value) if proxy_value is not None else False
        for key, value in per_address.items():
            if key in LISTEN_UDP_KEYS and proxy:
                raise ConfigError(
                    f"{per_address.key_pos[key]}: invalid per-address listen option with "
                    f"tcp_proxy: {key!r}"
                )
            if key in LISTEN_INT_KEYS:
                low, high = INT_OPTIONS[key]
                settings[key] = read_int(key, value, low, high)
            elif key in LISTEN_BOOL_KEYS:
                settings[key] = read_bool(key, value)
            else:
                raise ConfigError(
                    f"{per_address.key_pos[key]}: invalid per-address listen option {key!r}"
                )
        settings.setdefault("tcp_pad", proxy)
        if proxy:
            settings["udp_threads"] = 0  # gdnsd.config(5): no UDP listeners for a PROXY address
    return ListenAddress(address.host, address.port, **settings)  # type: ignore[arg-type]


# -- tcp_control --------------------------------------------------------------


def _read_tcp_control(value: ConfigValue) -> tuple[ControlAddress, ...]:
    entries = _address_specs(
        value,
        not_a_string="option 'tcp_control': all address specs must be strings",
        not_a_hash="option 'tcp_control': per-address config must be a hash",
    )
    return tuple(_control_address(spec, extra) for spec, extra in entries)


def _control_address(spec: ConfigScalar, per_address: ConfigHash | None) -> ControlAddress:
    address = _resolve("tcp_control", spec, 0)
    if address.port == 0:
        raise ConfigError(
            f"{spec.pos}: could not process tcp_control address spec {str(spec)!r}: port number required"
        )
    flags = {"chal_ok": False, "ctl_ok": False}
    for key, value in (per_address or {}).items():
        if key not in flags:
            raise ConfigError(f"{value.pos}: invalid TCP control socket key {key!r}")
        flags[key] = read_bool(key, value)
    return ControlAddress(address.host, address.port, address.family, **flags)


# -- http_listen, http_allow ----------------------------------------------------


def _read_http_listen(value: ConfigValue, http_port: int) -> tuple[HttpAddress, ...]:
    if isinstance(value, ConfigHash):
        raise ConfigError(f"{value.pos}: option 'http_listen': an address or a list of addresses (no per-address options)")
    entries = _address_specs(
        value,
        not_a_string="option 'http_listen': all address specs must be strings",
        not_a_hash="",
    )
    addresses = []
    for spec, _ in entries:
        address = _resolve("http_listen", spec, http_port)
        if address.port == 0:
            raise ConfigError(f"{spec.pos}: could not process http_listen address spec {str(spec)!r}: port 0")
        addresses.append(HttpAddress(address.host, address.port, address.family))
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"{value.pos}: option 'http_listen': an address is listed twice")
    return tuple(addresses)


def _read_http_allow(value: ConfigValue) -> tuple[Network, ...]:
    """Client networks (``192.0.2.0/24``, ``2001:db8::/32``, a bare address) allowed to connect."""
    items: list[ConfigValue] = list(value) if isinstance(value, ConfigList) else [value]
    networks = []
    for item in items:
        if not isinstance(item, ConfigScalar):
            raise ConfigError(f"{item.pos}: option 'http_allow': all networks must be strings")
        try:
            networks.append(ipaddress.ip_network(c_string(item)))
        except ValueError as exc:
            raise ConfigError(f"{item.pos}: option 'http_allow': {str(item)!r} is not a network: {exc}") from exc
    return tuple(networks)


def _overlaps(host: str, port: int, other_host: str, other_port: int) -> bool:
    """Whether two TCP listeners would share connections (SO_REUSEPORT lets them bind together)."""
    if port != other_port:
        return False
    a, b = ipaddress.ip_address(host.split("%", 1)[0]), ipaddress.ip_address(other_host.split("%", 1)[0])
    return a.version == b.version and (a == b or a.is_unspecified or b.is_unspecified)


def _refuse_shared_ports(
    http_listen: tuple[HttpAddress, ...], others: list[ListenAddress | ControlAddress], pos: Position
) -> None:
    """An http_listen address must not take a DNS or control listener's port.

    Every listener sets SO_REUSEPORT, so the bind would succeed and the
    kernel would hand DNS clients to the status page (or the other way).
    """
    for address in http_listen:
        for other in others:
            if _overlaps(address.host, address.port, other.host, other.port):
                what = "DNS listen" if isinstance(other, ListenAddress) else "tcp_control"
                raise ConfigError(
                    f"{pos}: option 'http_listen': {format_address(address.host, address.port)} would share "
                    f"its port with the {what} address {format_address(other.host, other.port)}"
                )
