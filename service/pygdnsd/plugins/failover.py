"""simplefo (primary/secondary) and multifo (all-active groups).

TTL rules verified against gdnsd 3.8.1 (the man pages' "TTL cut in half" is
from gdnsd 2 and no longer happens): simplefo with the primary UP serves the
primary's monitored TTL; otherwise the least of both. multifo serves the
least TTL of all its addresses. With both families, the least over both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pygdnsd.config.vscf import ConfigHash, ConfigList
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.sttl import TTL_MAX
from pygdnsd.plugins.base import Monitored, States, monitored
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.values import address_value, boolean, service_types, up_thresh

INHERITED = ("service_types", "up_thresh", "ignore_health")


def _families(result_parts: list[tuple[bool, tuple[bytes, ...], int, bool]]) -> DynamicResult:
    v4: tuple[bytes, ...] = ()
    v6: tuple[bytes, ...] = ()
    ttl, failed = TTL_MAX, False
    for is_v6, addrs, part_ttl, part_failed in result_parts:
        if is_v6:
            v6 = addrs
        else:
            v4 = addrs
        ttl = min(ttl, part_ttl)
        failed = failed or part_failed
    return DynamicResult(v4=v4, v6=v6, ttl=ttl, failed=failed)


# -- simplefo ----------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    v6: bool
    primary: Monitored
    secondary: Monitored

    def pick(self, states: States) -> tuple[bool, tuple[bytes, ...], int, bool]:
        p = self.primary.state(states)
        if not p.down:
            return self.v6, (self.primary.address.packed,), p.ttl, False
        s = self.secondary.state(states)
        ttl = min(p.ttl, s.ttl)
        if not s.down:
            return self.v6, (self.secondary.address.packed,), ttl, False
        return self.v6, (self.primary.address.packed,), ttl, True


class Picker(Protocol):
    """One failover unit of a resource (a simplefo Pair, a multifo Group)."""

    def pick(self, states: States) -> tuple[bool, tuple[bytes, ...], int, bool]: ...


@dataclass(frozen=True)
class Failover:
    """simplefo and multifo alike: a resource answers with what each of its units picks."""

    resources: Mapping[str, tuple[Picker, ...]]
    name: str

    def has(self, resource: str) -> bool:
        return resource in self.resources

    def may_cname(self, resource: str) -> bool:
        return False

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        return _families([unit.pick(states) for unit in self.resources[resource]])


def load_simplefo(conf: ConfigHash, monitor: Monitor, plugin: str = "simplefo") -> Failover:
    default_types = (
        service_types(conf["service_types"], plugin) if "service_types" in conf else ("up",)
    )
    out: dict[str, tuple[Pair, ...]] = {}
    for key, value in conf.items():
        if key == "service_types":
            continue
        where = f"plugin {plugin}: resource {key!r}"
        if not isinstance(value, ConfigHash):
            raise ConfigError(f"{value.pos}: {where}: must be a hash")
        types = (
            service_types(value["service_types"], where)
            if "service_types" in value
            else default_types
        )
        pairs = []
        if "addrs_v4" in value or "addrs_v6" in value:
            for fam in ("addrs_v4", "addrs_v6"):
                if fam in value:
                    sub = value[fam]
                    if not isinstance(sub, ConfigHash):
                        raise ConfigError(f"{sub.pos}: {where}: {fam!r} must be a hash")
                    pairs.append(_pair(sub, monitor, types, f"{where} ({fam})", fam == "addrs_v6"))
        else:
            pairs.append(_pair(value, monitor, types, f"{where} (direct)", None))
        out[key] = tuple(pairs)
    return Failover(out, "simplefo")


def _pair(
    conf: ConfigHash, monitor: Monitor, types: tuple[str, ...], where: str, v6: bool | None
) -> Pair:
    if "service_types" in conf:
        types = service_types(conf["service_types"], where)
    found = {}
    for which in ("primary", "secondary"):
        if which not in conf:
            raise ConfigError(
                f"{conf.pos}: {where}: {which!r} must be defined as an IP address string"
            )
        found[which] = address_value(conf[which], where)
    for key in conf:
        if key not in ("primary", "secondary", "service_types"):
            raise ConfigError(f"{conf.key_pos[key]}: {where}: unknown key {key!r}")
    primary, secondary = found["primary"], found["secondary"]
    if primary.v6 != secondary.v6 or (v6 is not None and primary.v6 != v6):
        raise ConfigError(
            f"{conf.pos}: {where}: 'primary' and 'secondary' must be of the same (right) family"
        )
    return Pair(
        primary.v6, monitored(monitor, primary, types), monitored(monitor, secondary, types)
    )


# -- multifo -----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    v6: bool
    members: tuple[Monitored, ...]
    up_thresh: float
    ignore_health: bool

    def pick(self, states: States) -> tuple[bool, tuple[bytes, ...], int, bool]:
        ttl = TTL_MAX
        alive = []
        for member in self.members:
            state = member.state(states)
            ttl = min(ttl, state.ttl)
            if not state.down:
                alive.append(member.address.packed)
        passed = len(alive) >= math.ceil(self.up_thresh * len(self.members))
        every = tuple(m.address.packed for m in self.members)
        if passed and not self.ignore_health:
            return self.v6, tuple(alive), ttl, False
        return self.v6, every, ttl, not passed


@dataclass(frozen=True)
class _Inherited:
    service_types: tuple[str, ...] = ("up",)
    up_thresh: float = 0.5
    ignore_health: bool = False

    def override(self, conf: ConfigHash, where: str) -> _Inherited:
        return _Inherited(
            service_types(conf["service_types"], where)
            if "service_types" in conf
            else self.service_types,
            up_thresh(conf["up_thresh"], where) if "up_thresh" in conf else self.up_thresh,
            boolean(conf["ignore_health"], where, "ignore_health")
            if "ignore_health" in conf
            else self.ignore_health,
        )


def load_multifo(conf: ConfigHash, monitor: Monitor, plugin: str = "multifo") -> Failover:
    top = _Inherited().override(conf, f"plugin {plugin}")
    out: dict[str, tuple[Group, ...]] = {}
    for key, value in conf.items():
        if key in INHERITED:
            continue
        where = f"plugin {plugin}: resource {key!r}"
        if isinstance(value, ConfigList):
            out[key] = (_group(value, top, monitor, f"{where} (direct)", None),)
            continue
        if not isinstance(value, ConfigHash):
            raise ConfigError(f"{value.pos}: {where}: must be a hash or an array of addresses")
        settings = top.override(value, where)
        if "addrs_v4" in value or "addrs_v6" in value:
            groups = []
            for fam in ("addrs_v4", "addrs_v6"):
                if fam in value:
                    groups.append(
                        _group(value[fam], settings, monitor, f"{where} ({fam})", fam == "addrs_v6")
                    )
            out[key] = tuple(groups)
        else:
            out[key] = (_group(value, settings, monitor, f"{where} (direct)", None),)
    return Failover(out, "multifo")


def _group(
    value: object, settings: _Inherited, monitor: Monitor, where: str, v6: bool | None
) -> Group:
    if isinstance(value, ConfigList):
        pairs = [(str(i + 1), item) for i, item in enumerate(value)]
        pos = value.pos
    elif isinstance(value, ConfigHash):
        settings = settings.override(value, where)
        pairs = [
            (k, v)
            for k, v in value.items()
            if k not in INHERITED and k not in ("addrs_v4", "addrs_v6")
        ]
        pos = value.pos
    else:
        raise ConfigError(f"{where}: must be a hash or an array of addresses")
    if not pairs:
        raise ConfigError(f"{pos}: {where}: no addresses defined")
    addresses = [address_value(v, f"{where}: {label!r}") for label, v in pairs]
    family = addresses[0].v6 if v6 is None else v6
    if any(a.v6 != family for a in addresses):
        raise ConfigError(f"{pos}: {where}: all addresses must be of the same family")
    members = tuple(monitored(monitor, a, settings.service_types) for a in addresses)
    return Group(family, members, settings.up_thresh, settings.ignore_health)
