"""metafo: ordered failover between "datacenters" served by other plugins.

From ``man gdnsd-plugin-metafo`` and checked against gdnsd 3.8.1: the first
datacenter whose sub-plugin does not report failure answers; each datacenter
also has an admin-only state ``metafo/RES/DC`` that, when forced, replaces
its failure signal and TTL. A CNAME datacenter is monitored itself, as
``CNAME/TYPE`` for each of the resource's ``service_types`` (default
``up``; gdnsd 3.8.1's ``gdnsdctl states``), so admin_state can take it down. The TTL is the least over the datacenters tried
up to the one that answers; when all fail, the first one answers with the
least TTL of all.
``RES/DC`` resolves that datacenter directly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pygdnsd.config.scalars import c_string
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, ConfigValue, Position
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.service_types import HttpStatus, TcpConnect
from pygdnsd.monitoring.sttl import TTL_MAX
from pygdnsd.plugins.base import Monitored, Resolver, States, monitored
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.values import Address, boolean, parse_address, parse_cname, service_types

RESOURCE_KEYS = ("datacenters", "dcmap", "skip_first")
# plugin name -> {resource name -> its config}: what a meta-plugin asks other plugins to build.
Synthesized = dict[str, dict[str, ConfigHash]]
DEFAULT_SUBPLUGIN = "multifo"


@dataclass
class Datacenter:
    name: str
    state_name: str
    plugin: str = ""
    resource: str = ""
    cname: DynamicResult | None = None
    cname_monitored: Monitored | None = None
    target: Resolver | None = None
    # geoip: the map-wide admin state (geoip/MAP/DC), forced below the resource's own.
    map_state_name: str | None = None

    def resolve(self, client: ClientInfo, states: States, rng: random.Random) -> DynamicResult:
        if self.cname is not None:
            result = self.cname
            if self.cname_monitored is not None:
                state = self.cname_monitored.state(states)
                result = _replace(result, ttl=state.ttl, failed=state.down)
        else:
            assert self.target is not None, "metafo datacenter not bound to its plugin"
            result = self.target.resolve(self.resource, client, states, rng)
        forced = states.get(self.state_name)
        if forced is None and self.map_state_name is not None:
            forced = states.get(self.map_state_name)
        if forced is None:
            return result
        # gdnsd 3.8.1: a forced datacenter's state replaces its sub-plugin's, TTL
        # included (metafo/r/dc => UP/250 answers TTL 250 over an address at UP/20).
        return _replace(result, ttl=forced.ttl, failed=forced.down)


def _replace(result: DynamicResult, ttl: int, failed: bool) -> DynamicResult:
    return DynamicResult(
        result.v4, result.v6, result.cname, result.cname_relative, ttl, failed, result.scope
    )


@dataclass
class Metafo:
    resources: dict[str, tuple[Datacenter, ...]]
    skip_first: dict[str, bool]
    name: str = "metafo"
    # plugin name -> {resource name -> synthesized config} for the registry to build.
    synthesized: dict[str, dict[str, ConfigHash]] = field(default_factory=dict)

    def has(self, resource: str) -> bool:
        return self._lookup(resource) is not None

    def may_cname(self, resource: str) -> bool:
        dcs = self._lookup(resource)
        assert dcs is not None
        return any(
            dc.cname is not None or (dc.target is not None and dc.target.may_cname(dc.resource))
            for dc in dcs
        )

    def _lookup(self, resource: str) -> tuple[Datacenter, ...] | None:
        if resource in self.resources:
            dcs = self.resources[resource]
            return dcs[1:] if self.skip_first[resource] and len(dcs) > 1 else dcs
        res, _, dc_name = resource.rpartition("/")
        for dc in self.resources.get(res, ()):
            if dc.name == dc_name:
                return (dc,)
        return None

    def bind(self, find: Callable[[str], Resolver | None]) -> None:
        """Point each datacenter at its sub-plugin (after all plugins are built)."""
        for res, dcs in self.resources.items():
            for dc in dcs:
                if dc.cname is not None:
                    continue
                target = find(dc.plugin)
                if target is None or not target.has(dc.resource):
                    raise ConfigError(
                        f"plugin metafo: resource {res!r}: datacenter {dc.name!r}: "
                        f"plugin {dc.plugin!r} has no resource {dc.resource!r}"
                    )
                dc.target = target

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        dcs = self._lookup(resource)
        assert dcs is not None
        return fail_over(dcs, client, states, rng)


def fail_over(
    dcs: Sequence[Datacenter], client: ClientInfo, states: States, rng: random.Random
) -> DynamicResult:
    """The first datacenter of ``dcs`` that does not fail answers (metafo's and geoip's rule).

    Its client-subnet scope comes with it: gdnsd 3.8.1 forgets the scope of
    a datacenter it failed over from (a geoip inside metafo; differential test).
    """
    ttl = TTL_MAX
    first: DynamicResult | None = None
    for dc in dcs:
        result = dc.resolve(client, states, rng)
        ttl = min(ttl, result.ttl)
        if first is None:
            first = result
        if not result.failed:
            return _replace(result, ttl, False)
    assert first is not None
    return _replace(first, ttl, True)


def load_metafo(conf: ConfigHash, monitor: Monitor) -> Metafo:
    if "resources" not in conf or not isinstance(conf["resources"], ConfigHash):
        raise ConfigError(f"{conf.pos}: plugin metafo: config needs a 'resources' hash")
    top = {k: v for k, v in conf.items() if k != "resources"}
    resources_conf = conf["resources"]
    assert isinstance(resources_conf, ConfigHash)
    out = Metafo({}, {})
    for res, value in resources_conf.items():
        where = f"plugin metafo: resource {res!r}"
        if "/" in res:
            raise ConfigError(
                f"{resources_conf.key_pos[res]}: {where}: resource names cannot contain '/'"
            )
        if not isinstance(value, ConfigHash):
            raise ConfigError(f"{value.pos}: {where}: must be a hash")
        inherited = dict(top)
        inherited.update({k: v for k, v in value.items() if k not in RESOURCE_KEYS})
        names = _datacenters(value, where)
        dcmap = value.get("dcmap")
        if not isinstance(dcmap, ConfigHash):
            raise ConfigError(f"{value.pos}: {where}: 'dcmap' must be defined as a hash")
        if sorted(dcmap) != sorted(names):
            raise ConfigError(
                f"{dcmap.pos}: {where}: the dcmap does not match the datacenters list"
            )
        # Configured (states registered, resources synthesized) in the dcmap's
        # order, as gdnsd 3.8.1 lists them in ``gdnsdctl states``; failover
        # follows the datacenters list.
        by_name = {}
        for dc_name in dcmap:
            dc = Datacenter(dc_name, monitor.add_virtual(f"metafo/{res}/{dc_name}"))
            configure_datacenter(
                dc,
                dcmap[dc_name],
                inherited,
                f"metafo_{res}_{dc_name}",
                out.synthesized,
                f"{where}: {dc_name!r}",
                monitor,
            )
            by_name[dc_name] = dc
        out.resources[res] = tuple(by_name[dc_name] for dc_name in names)
        out.skip_first[res] = (
            boolean(value["skip_first"], where, "skip_first") if "skip_first" in value else False
        )
    return out


def _datacenters(conf: ConfigHash, where: str) -> list[str]:
    value = conf.get("datacenters")
    items: list[ConfigValue] = (
        list(value) if isinstance(value, ConfigList) else [value] if value else []
    )
    if not items or not all(isinstance(i, ConfigScalar) for i in items):
        raise ConfigError(
            f"{conf.pos}: {where}: 'datacenters' must be an array of datacenter names"
        )
    return [c_string(i) for i in items if isinstance(i, ConfigScalar)]


def configure_datacenter(
    dc: Datacenter,
    value: ConfigValue,
    inherited: dict[str, ConfigValue],
    synth: str,
    out: Synthesized,
    where: str,
    monitor: Monitor,
) -> None:
    """Point ``dc`` at what its dcmap ``value`` names, adding to ``out`` the config it implies."""
    default_plugin = inherited.get("plugin")
    plugin = (
        c_string(default_plugin) if isinstance(default_plugin, ConfigScalar) else DEFAULT_SUBPLUGIN
    )
    params = {k: v for k, v in inherited.items() if k != "plugin"}
    if isinstance(value, ConfigScalar):
        text = c_string(value)
        if text.startswith("%") or text.startswith("!"):
            ref_plugin, _, ref_res = text.lstrip("%").partition("!")
            dc.plugin, dc.resource = (ref_plugin or plugin), ref_res
            return
        if parse_address(text) is not None:
            _synthesize(dc, "multifo", synth, value.pos, params, {"1": value}, out)
            return
        cname = parse_cname(value, where)
        dc.cname = DynamicResult(cname=cname.wire, cname_relative=cname.relative)
        types = inherited.get("service_types")
        names = service_types(types, where) if types is not None else ("up",)
        for name in names:
            # gdnsd 3.8.1 refuses these (they need an address to connect to).
            found = monitor.service_types.get(name)
            if found is not None and isinstance(found.check, (TcpConnect, HttpStatus)):
                raise ConfigError(
                    f"{where}: Service type '{name}' does not support CNAME monitoring for '{cname.text}'"
                )
        # Registered here, after the datacenter's own state: gdnsd lists them in that order.
        dc.cname_monitored = monitored(monitor, Address(cname.text, b""), names)
        return
    if isinstance(value, ConfigList):
        _synthesize(
            dc,
            "multifo",
            synth,
            value.pos,
            params,
            {str(i + 1): v for i, v in enumerate(value)},
            out,
        )
        return
    own_plugin = value.get("plugin")
    if isinstance(own_plugin, ConfigScalar):
        plugin = c_string(own_plugin)
    _synthesize(
        dc, plugin, synth, value.pos, params, {k: v for k, v in value.items() if k != "plugin"}, out
    )


def _synthesize(
    dc: Datacenter,
    plugin: str,
    synth: str,
    pos: Position,
    params: dict[str, ConfigValue],
    own: dict[str, ConfigValue],
    out: Synthesized,
) -> None:
    conf = ConfigHash(pos)
    for key, item in {**params, **own}.items():
        conf[key] = item
        conf.key_pos[key] = item.pos
    out.setdefault(plugin, {})[synth] = conf
    dc.plugin, dc.resource = plugin, synth
