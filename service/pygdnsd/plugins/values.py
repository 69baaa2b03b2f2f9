"""Reading plugin config values: addresses, CNAMEs, service_types lists, thresholds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pygdnsd.config.scalars import c_string
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, ConfigValue
from pygdnsd.errors import ConfigError
from pygdnsd.zones import names


@dataclass(frozen=True)
class Address:
    """A configured address: ``text`` is how monitoring names it (e.g. ``192.0.2.1``)."""

    text: str
    packed: bytes

    @property
    def v6(self) -> bool:
        return len(self.packed) == 16


@dataclass(frozen=True)
class Cname:
    text: str
    wire: bytes
    relative: bool


def parse_address(text: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(c_string(text))
    except ValueError:
        return None
    return Address(str(ip), ip.packed)


def parse_cname(value: ConfigScalar, where: str) -> Cname:
    text = c_string(value)
    relative = not text.endswith(".")
    try:
        wire = names.from_text(text if not relative else text + ".")
    except ValueError as exc:
        raise ConfigError(
            f"{value.pos}: {where}: {text!r} is not a valid domain name ({exc})"
        ) from exc
    if relative:
        wire = wire[:-1]
    return Cname(text, names.lower(wire), relative)


def scalar(value: ConfigValue, where: str, what: str) -> ConfigScalar:
    if not isinstance(value, ConfigScalar):
        raise ConfigError(f"{value.pos}: {where}: {what} must be a single value")
    return value


def address_value(value: ConfigValue, where: str) -> Address:
    text = scalar(value, where, "an address")
    address = parse_address(text)
    if address is None:
        raise ConfigError(f"{value.pos}: {where}: {str(text)!r} is not an IP address")
    return address


def service_types(value: ConfigValue, where: str) -> tuple[str, ...]:
    items: list[ConfigValue] = list(value) if isinstance(value, ConfigList) else [value]
    out = []
    for item in items:
        out.append(c_string(scalar(item, where, "service_types")))
    return tuple(out)


def up_thresh(value: ConfigValue, where: str) -> float:
    text = scalar(value, where, "'up_thresh'")
    try:
        number = float(c_string(text))
    except ValueError:
        number = -1.0
    if not 0.0 < number <= 1.0:
        raise ConfigError(
            f"{value.pos}: {where}: 'up_thresh' must be a floating point value in (0.0 - 1.0]"
        )
    return number


def boolean(value: ConfigValue, where: str, key: str) -> bool:
    text = c_string(scalar(value, where, repr(key))).lower()
    if text not in ("true", "false"):
        raise ConfigError(f"{value.pos}: {where}: {key!r} must be true or false")
    return text == "true"


def child_hash(parent: ConfigHash, key: str, where: str) -> ConfigHash:
    value = parent[key]
    if not isinstance(value, ConfigHash):
        raise ConfigError(f"{value.pos}: {where}: {key!r} must be a hash")
    return value


def key_where(conf: ConfigHash, key: str) -> str:
    return str(conf.key_pos.get(key, conf.pos))
