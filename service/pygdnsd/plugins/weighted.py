"""weighted: weighted-random choice of addresses, address groups or CNAMEs.

Semantics from ``man gdnsd-plugin-weighted``: a DOWN item weighs 0; when
the live weight falls below ``ceil(up_thresh * configured total)`` every item
counts as UP and the resource reports failure. Single choice picks one item
with odds weight/sum; multi includes each item with odds weight/max. The TTL
is the least monitored TTL over all items (verified against gdnsd 3.8.1).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TypeVar

from pygdnsd.config.scalars import strtoul
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, ConfigValue
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.sttl import TTL_MAX
from pygdnsd.plugins.base import Monitored, States, monitored
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.values import (
    Address,
    boolean,
    parse_address,
    parse_cname,
    service_types,
    up_thresh,
)

T = TypeVar("T")
INHERITED = ("service_types", "up_thresh", "multi")
MAX_WEIGHT = 2**20
MAX_ITEMS = 64


@dataclass(frozen=True)
class Item:
    monitored: Monitored
    weight: int
    cname: bytes | None = None
    cname_relative: bool = False


@dataclass(frozen=True)
class Family:
    """One address family's (or the CNAME) set: groups of items (ungrouped = one item per group)."""

    v6: bool
    groups: tuple[tuple[Item, ...], ...]
    grouped: bool
    multi: bool
    up_thresh: float

    def pick(self, states: States, rng: random.Random) -> tuple[list[Item], int, bool]:
        ttl = TTL_MAX
        dyn: list[list[int]] = []
        total = alive = 0
        for group in self.groups:
            weights = []
            for item in group:
                state = item.monitored.state(states)
                ttl = min(ttl, state.ttl)
                weights.append(0 if state.down else item.weight)
                total += item.weight
                alive += weights[-1]
            dyn.append(weights)
        failed = alive < math.ceil(self.up_thresh * total)
        if failed:
            dyn = [[item.weight for item in group] for group in self.groups]
        if not self.grouped:
            items = [group[0] for group in self.groups]
            weights = [w[0] for w in dyn]
            chosen = _multi(items, weights, rng) if self.multi else [_single(items, weights, rng)]
            return chosen, ttl, failed
        sums = [sum(w) for w in dyn]
        indexes = list(range(len(self.groups)))
        if self.multi:
            picked = _multi(indexes, sums, rng)
            return [_single(list(self.groups[i]), dyn[i], rng) for i in picked], ttl, failed
        i = _single(indexes, sums, rng)
        return _multi(list(self.groups[i]), dyn[i], rng), ttl, failed


def _single(items: list[T], weights: list[int], rng: random.Random) -> T:
    total = sum(weights)
    if total <= 0:
        return items[0]
    point = rng.randrange(total)
    for item, weight in zip(items, weights, strict=True):
        if point < weight:
            return item
        point -= weight
    return items[-1]


def _multi(items: list[T], weights: list[int], rng: random.Random) -> list[T]:
    top = max(weights)
    if top <= 0:
        return list(items)
    return [
        item for item, w in zip(items, weights, strict=True) if w > 0 and rng.randrange(top) < w
    ]


@dataclass(frozen=True)
class Weighted:
    resources: dict[str, tuple[Family, ...]]
    name: str = "weighted"

    def has(self, resource: str) -> bool:
        return resource in self.resources

    def may_cname(self, resource: str) -> bool:
        return any(
            item.cname is not None
            for fam in self.resources[resource]
            for g in fam.groups
            for item in g
        )

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        v4: tuple[bytes, ...] = ()
        v6: tuple[bytes, ...] = ()
        ttl, failed = TTL_MAX, False
        for family in self.resources[resource]:
            items, fam_ttl, fam_failed = family.pick(states, rng)
            ttl, failed = min(ttl, fam_ttl), failed or fam_failed
            if items and items[0].cname is not None:
                item = items[0]
                return DynamicResult(
                    cname=item.cname, cname_relative=item.cname_relative, ttl=ttl, failed=failed
                )
            packed = tuple(item.monitored.address.packed for item in items)
            if family.v6:
                v6 = packed
            else:
                v4 = packed
        return DynamicResult(v4=v4, v6=v6, ttl=ttl, failed=failed)


@dataclass(frozen=True)
class _Settings:
    service_types: tuple[str, ...] = ("up",)
    up_thresh: float = 0.5
    multi: bool = False

    def override(self, conf: ConfigHash, where: str) -> _Settings:
        return _Settings(
            service_types(conf["service_types"], where)
            if "service_types" in conf
            else self.service_types,
            up_thresh(conf["up_thresh"], where) if "up_thresh" in conf else self.up_thresh,
            boolean(conf["multi"], where, "multi") if "multi" in conf else self.multi,
        )


def load_weighted(conf: ConfigHash, monitor: Monitor, plugin: str = "weighted") -> Weighted:
    top = _Settings().override(conf, f"plugin {plugin}")
    out: dict[str, tuple[Family, ...]] = {}
    for key, value in conf.items():
        if key in INHERITED:
            continue
        where = f"plugin {plugin}: resource {key!r}"
        if not isinstance(value, ConfigHash):
            raise ConfigError(f"{value.pos}: {where}: must be a hash")
        settings = top.override(value, where)
        if "addrs_v4" in value or "addrs_v6" in value:
            families = []
            for fam in ("addrs_v4", "addrs_v6"):
                if fam in value:
                    sub = value[fam]
                    if not isinstance(sub, ConfigHash):
                        raise ConfigError(f"{sub.pos}: {where}: {fam!r} must be a hash")
                    families.append(
                        _family(sub, settings.override(sub, where), monitor, f"{where} ({fam})")
                    )
            out[key] = tuple(families)
        else:
            out[key] = (_family(value, settings, monitor, where),)
    return Weighted(out)


def _family(conf: ConfigHash, settings: _Settings, monitor: Monitor, where: str) -> Family:
    entries = [
        (k, v) for k, v in conf.items() if k not in INHERITED and k not in ("addrs_v4", "addrs_v6")
    ]
    if not entries:
        raise ConfigError(f"{conf.pos}: {where}: no items defined")
    if len(entries) > MAX_ITEMS:
        raise ConfigError(f"{conf.pos}: {where}: more than {MAX_ITEMS} items")
    grouped = isinstance(entries[0][1], ConfigHash)
    groups = []
    for label, value in entries:
        if grouped:
            if not isinstance(value, ConfigHash):
                raise ConfigError(
                    f"{value.pos}: {where}: {label!r}: all items must be groups (hashes)"
                )
            members = [(k, v) for k, v in value.items()]
            if not members or len(members) > MAX_ITEMS:
                raise ConfigError(
                    f"{value.pos}: {where}: group {label!r} needs 1..{MAX_ITEMS} addresses"
                )
            groups.append(
                tuple(_item(v, settings, monitor, f"{where}: {label!r}/{k!r}") for k, v in members)
            )
        else:
            groups.append((_item(value, settings, monitor, f"{where}: {label!r}"),))
    items = [item for group in groups for item in group]
    kinds = {
        "cname" if i.cname is not None else ("v6" if i.monitored.address.v6 else "v4")
        for i in items
    }
    if len(kinds) != 1:
        raise ConfigError(f"{conf.pos}: {where}: items must all be IPv4, all IPv6 or all CNAMEs")
    kind = kinds.pop()
    if kind == "cname" and grouped:
        raise ConfigError(f"{conf.pos}: {where}: CNAMEs cannot be grouped")
    return Family(
        kind == "v6", tuple(groups), grouped, settings.multi and kind != "cname", settings.up_thresh
    )


def _item(value: ConfigValue, settings: _Settings, monitor: Monitor, where: str) -> Item:
    if not (
        isinstance(value, ConfigList)
        and len(value) == 2
        and all(isinstance(v, ConfigScalar) for v in value)
    ):
        raise ConfigError(f"{value.pos}: {where}: must be [ ADDRESS-OR-CNAME, WEIGHT ]")
    target, weight_text = value[0], value[1]
    assert isinstance(target, ConfigScalar) and isinstance(weight_text, ConfigScalar)
    weight = strtoul(weight_text)
    if weight is None or not 0 < weight < MAX_WEIGHT:
        raise ConfigError(
            f"{weight_text.pos}: {where}: weight must be an integer in 1..{MAX_WEIGHT - 1}"
        )
    address = parse_address(target)
    if address is not None:
        return Item(monitored(monitor, address, settings.service_types), weight)
    cname = parse_cname(target, where)
    thing = Address(cname.text, b"")
    return Item(
        monitored(monitor, thing, settings.service_types), weight, cname.wire, cname.relative
    )
