"""The geoip resolver: metafo's failover over a datacenter list chosen by the client's network.

gdnsd-plugin-geoip(8), checked against gdnsd 3.8.1: a resource names a map
and a ``dcmap`` (metafo's: an address, a list, a hash of named addresses,
a CNAME, or another plugin's resource); the map turns the client's address
(the client-subnet option's when it has a source prefix above 0 and the
map does not ``ignore_ecs``) into an ordered datacenter list, the
datacenters the resource leaves undefined are dropped, ``skip_first``
drops the first of two or more, and the first datacenter that is not down
answers, with metafo's TTL rules. ``RES/DC`` pins one datacenter and
answers scope 0; every datacenter has an admin-only state ``geoip/RES/DC``.
The client-subnet scope is the length of the map's network that held the
address (``addresses.scope_of``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pygdnsd.config.scalars import c_string
from pygdnsd.config.vscf import ConfigHash, ConfigScalar, ConfigValue
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.plugins.base import Resolver, States
from pygdnsd.plugins.geoip.config import read_map
from pygdnsd.plugins.geoip.decisions import Decisions, remember
from pygdnsd.plugins.geoip.live import LiveMap, Watcher
from pygdnsd.plugins.geoip.tables import MapDataError
from pygdnsd.plugins.metafo import Datacenter, Synthesized, configure_datacenter, fail_over
from pygdnsd.plugins.result import ClientInfo, DynamicResult

RESOURCE_KEYS = ("map", "dcmap", "skip_first")
TOP_KEYS = ("maps", "resources", "undefined_datacenters_ok")
# Sub-plugins whose answer depends only on the monitored states: results over
# them can be remembered per datacenter list (see ``decisions``).
STATE_ONLY_PLUGINS = frozenset({"multifo", "simplefo", "static", "null"})


@dataclass
class GeoipResource:
    name: str
    live: LiveMap
    # Indexed by the map's datacenter number; None where the dcmap leaves it undefined.
    datacenters: tuple[Datacenter | None, ...]
    skip_first: bool = False
    cacheable: bool = False

    def defined(self) -> tuple[Datacenter, ...]:
        return tuple(dc for dc in self.datacenters if dc is not None)


def _scoped(result: DynamicResult, scope: int, remembered: bool = False) -> DynamicResult:
    return DynamicResult(
        result.v4, result.v6, result.cname, result.cname_relative, result.ttl, result.failed, scope,
        remembered,
    )


EMPTY = DynamicResult()


@dataclass
class Geoip:
    maps: dict[str, LiveMap]
    resources: dict[str, GeoipResource]
    synthesized: Synthesized = field(default_factory=dict)
    name: str = "geoip"
    decisions: Decisions = field(default_factory=Decisions)
    watcher: Watcher | None = None

    # -- Resolver ------------------------------------------------------------

    def has(self, resource: str) -> bool:
        return self._pinned(resource) is not None or resource in self.resources

    def may_cname(self, resource: str) -> bool:
        pinned = self._pinned(resource)
        dcs = (pinned,) if pinned is not None else self.resources[resource].defined()
        return any(
            dc.cname is not None or (dc.target is not None and dc.target.may_cname(dc.resource))
            for dc in dcs
        )

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        if self.watcher is not None and not self.watcher.running:
            self.watcher.ensure_running()
        res = self.resources.get(resource)
        if res is None:
            pinned = self._pinned(resource)
            assert pinned is not None
            # No lookup of our own: the scope is whatever the datacenter's gave.
            return fail_over((pinned,), client, states, rng)
        live = res.live
        current = live.current
        subnet = client.subnet
        if subnet is not None and subnet.source_prefix and not live.spec.ignore_ecs:
            value, scope = current.lookup(subnet.address)
        else:
            value, scope = current.lookup(client.address)
            scope = 0
        if not res.cacheable:
            # A geoip datacenter's own lookup may go deeper than ours: gdnsd
            # answers the deepest scope of the query's lookups.
            decided = self._decide(res, current.dclists[value], client, states, rng)
            return _scoped(decided, max(scope, decided.scope))
        epoch = self.decisions.epoch(states)
        key = (resource, value, scope)
        found = current.answers.get(key)
        if found is not None and found[0] == epoch:
            return found[1]
        result = _scoped(self._decide(res, current.dclists[value], client, states, rng), scope, True)
        remember(current.answers, key, epoch, result)
        return result

    # -- helpers -------------------------------------------------------------

    def _decide(
        self,
        res: GeoipResource,
        dclist: tuple[int, ...],
        client: ClientInfo,
        states: States,
        rng: random.Random,
    ) -> DynamicResult:
        dcs = [dc for dc in (res.datacenters[i] for i in dclist) if dc is not None]
        if res.skip_first and len(dcs) > 1:
            del dcs[0]
        if not dcs:
            return EMPTY
        return fail_over(dcs, client, states, rng)

    def _pinned(self, resource: str) -> Datacenter | None:
        name, slash, dc_name = resource.rpartition("/")
        res = self.resources.get(name) if slash else None
        if res is None:
            return None
        for dc in res.defined():
            if dc.name == dc_name:
                return dc
        return None

    def bind(self, find: Callable[[str], Resolver | None]) -> None:
        """Point each datacenter at its sub-plugin (after all plugins are built)."""
        for res in self.resources.values():
            cacheable = True
            for dc in res.defined():
                if dc.cname is not None:
                    continue
                target = find(dc.plugin)
                if target is None or not target.has(dc.resource):
                    raise ConfigError(
                        f"plugin geoip: resource '{res.name}': datacenter '{dc.name}': "
                        f"plugin '{dc.plugin}' rejected DYNA resource name '{dc.resource}'"
                    )
                dc.target = target
                cacheable = cacheable and dc.plugin in STATE_ONLY_PLUGINS
            res.cacheable = cacheable

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()


def _bool(value: ConfigValue, where: str, key: str) -> bool:
    text = c_string(value).lower() if isinstance(value, ConfigScalar) else ""
    if text not in ("true", "false"):
        raise ConfigError(f"{where}: '{key}' must be a boolean value ('true' or 'false')")
    return text == "true"


def load_geoip(conf: ConfigHash, monitor: Monitor, cfgdir: Path) -> Geoip:
    """The geoip plugin of a ``plugins => { geoip => {...} }`` stanza, its maps loaded."""
    label = "plugin_geoip"
    maps_conf = conf.get("maps")
    if maps_conf is None:
        raise ConfigError(f"{conf.pos}: {label}: config has no 'maps' stanza")
    if not isinstance(maps_conf, ConfigHash):
        raise ConfigError(f"{maps_conf.pos}: {label}: 'maps' stanza must be a hash")
    if not maps_conf:
        raise ConfigError(f"{maps_conf.pos}: {label}: 'maps' stanza must contain one or more maps")
    undefined_ok = False
    if "undefined_datacenters_ok" in conf:
        undefined_ok = _bool(
            conf["undefined_datacenters_ok"],
            f"{conf.key_pos['undefined_datacenters_ok']}: {label}",
            "undefined_datacenters_ok",
        )
    maps: dict[str, LiveMap] = {}
    for name, value in maps_conf.items():
        spec = read_map(name, value, str(maps_conf.key_pos.get(name, maps_conf.pos)), cfgdir)
        try:
            maps[name] = LiveMap.load(spec)
        except MapDataError as exc:
            raise ConfigError(f"{exc.where or spec.where}: {exc}") from None
    for name, live in maps.items():
        # Map-wide admin states, forcing a datacenter for every resource of the map.
        for dc_name in live.spec.datacenters:
            monitor.add_virtual(f"geoip/{name}/{dc_name}")
    resources_conf = conf.get("resources")
    if resources_conf is None:
        raise ConfigError(f"{conf.pos}: {label}: config has no 'resources' stanza")
    if not isinstance(resources_conf, ConfigHash):
        raise ConfigError(f"{resources_conf.pos}: {label}: 'resources' stanza must be a hash")
    if not resources_conf:
        raise ConfigError(f"{resources_conf.pos}: {label}: No resources defined")
    inherited_top = {k: v for k, v in conf.items() if k not in TOP_KEYS}
    out = Geoip(maps, {})
    for res, value in resources_conf.items():
        at = str(resources_conf.key_pos.get(res, resources_conf.pos))
        out.resources[res] = _resource(
            res, value, at, maps, inherited_top, undefined_ok, monitor, out.synthesized
        )
    if "geoip" in out.synthesized:
        raise ConfigError(f"{conf.pos}: {label}: plugin_geoip cannot synthesize config for itself")
    out.watcher = Watcher(list(maps.values()))
    return out


def _resource(
    res: str,
    value: ConfigValue,
    at: str,
    maps: Mapping[str, LiveMap],
    inherited_top: Mapping[str, ConfigValue],
    undefined_ok: bool,
    monitor: Monitor,
    synthesized: Synthesized,
) -> GeoipResource:
    """One entry of ``resources``; ``at`` is the position of its key."""
    where = f"plugin_geoip: resource '{res}'"
    if "/" in res:
        raise ConfigError(f"{at}: {where}: resource names cannot contain '/'")
    if not isinstance(value, ConfigHash):
        raise ConfigError(f"{at}: {where}: the value of resource '{res}' must be a hash")
    map_value = value.get("map")
    if map_value is None:
        raise ConfigError(f"{at}: {where}: required key 'map' is missing")
    if not isinstance(map_value, ConfigScalar):
        raise ConfigError(f"{map_value.pos}: {where}: 'map' must be a string")
    live = maps.get(c_string(map_value))
    if live is None:
        raise ConfigError(f"{map_value.pos}: {where}: map '{c_string(map_value)}' does not exist")
    skip_first = (
        _bool(value["skip_first"], f"{value.key_pos.get('skip_first', at)}: {where}", "skip_first")
        if "skip_first" in value
        else False
    )
    dcmap = value.get("dcmap")
    if dcmap is None:
        raise ConfigError(f"{at}: {where}: missing required stanza 'dcmap'")
    if not isinstance(dcmap, ConfigHash):
        raise ConfigError(f"{dcmap.pos}: {where}: 'dcmap' value must be a hash structure")
    if not dcmap:
        raise ConfigError(f"{dcmap.pos}: {where}: 'dcmap' must define at least one datacenter")
    names = live.spec.datacenters
    for dc_name in dcmap:
        if dc_name not in names:
            raise ConfigError(
                f"{dcmap.key_pos.get(dc_name, dcmap.pos)}: {where}: datacenter name "
                f"'{dc_name}' is not valid (map '{live.spec.name}' has "
                f"datacenters {', '.join(names)})"
            )
    if not undefined_ok and sorted(dcmap) != sorted(names):
        raise ConfigError(
            f"{dcmap.pos}: {where}: the dcmap does not match the datacenters list of map "
            f"'{live.spec.name}' ({', '.join(names)}); "
            "set undefined_datacenters_ok to leave some out"
        )
    inherited = dict(inherited_top)
    inherited.update({k: v for k, v in value.items() if k not in RESOURCE_KEYS})
    # Configured (states registered, resources synthesized) in the dcmap's
    # order, as gdnsd 3.8.1 lists them in ``gdnsdctl states``; the slots
    # follow the map's datacenters.
    by_name: dict[str, Datacenter] = {}
    for dc_name in dcmap:
        target = dcmap[dc_name]
        if isinstance(target, ConfigScalar) and c_string(target).lstrip("%") in (
            f"geoip!{res}",
        ):
            raise ConfigError(f"{target.pos}: {where}: not allowed to reference itself!")
        dc = Datacenter(dc_name, monitor.add_virtual(f"geoip/{res}/{dc_name}"))
        dc.map_state_name = f"geoip/{live.spec.name}/{dc_name}"
        configure_datacenter(
            dc, target, inherited, f"geoip_{res}_{dc_name}", synthesized,
            f"{where}: datacenter '{dc_name}'", monitor,
        )
        by_name[dc_name] = dc
    return GeoipResource(res, live, tuple(by_name.get(dc_name) for dc_name in names), skip_first)
