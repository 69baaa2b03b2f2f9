"""The resolver plugins configured under ``plugins``, by name: the engine's entry point.

``load_plugins`` reads the section and registers every monitored resource
with the Monitor; ``Resolvers.check`` validates a DYNA/DYNC target at zone
load time; ``Resolvers.resolve`` answers one lookup (pure: it reads only the
states snapshot it is given). null, reflect and static work without a config
stanza, as in gdnsd.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pygdnsd.config.vscf import ConfigHash, ConfigValue, Position
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.plugins.base import Resolver, States
from pygdnsd.plugins.failover import load_multifo, load_simplefo
from pygdnsd.plugins.geoip.plugin import Geoip, load_geoip
from pygdnsd.plugins.metafo import Metafo, load_metafo
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.simple import Null, Reflect, load_static
from pygdnsd.plugins.weighted import load_weighted

# Monitoring-only plugins may have plugin-global settings here (e.g. extmon's helper_path).
MONITOR_ONLY = ("extmon", "extfile", "tcp_connect", "http_status")
Loader = Callable[[ConfigHash, Monitor, str], Resolver]
LOADERS: dict[str, Loader] = {
    "simplefo": load_simplefo,
    "multifo": load_multifo,
    "weighted": load_weighted,
}


def parse_reference(rdata: str) -> tuple[str, str]:
    """``plugin!resource`` (the DYNA/DYNC rdata) as (plugin, resource); no ``!`` means resource ""."""
    plugin, _, resource = rdata.partition("!")
    return plugin, resource


@dataclass
class Resolvers:
    plugins: dict[str, Resolver]
    monitor: Monitor
    _rng: random.Random = field(default_factory=random.Random)
    # Counts the events after which a plugin may answer a client otherwise:
    # a monitored or admin state changed, a plugin's live data (a geoip
    # database or nets file) was reloaded. Bumped after the change is in
    # place, so a response remembered under the old count is never served
    # under the new one (``engine.answer_cache.SubnetResponses``).
    changes: int = 0
    # Called on the watching thread once a plugin's reloaded live data is in place: the
    # daemon forks new workers then (``plugins/geoip/live.py`` says why).
    reload_listeners: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.monitor.subscribe(self.note_change)

    def start_watching(self) -> None:
        """Start the plugins' watches of their live data (geoip's databases and nets files).

        Before forking worker processes, which then do not watch: after a reload
        (``reload_listeners``) the daemon forks new ones.
        """
        geoip = self.plugins.get("geoip")
        if isinstance(geoip, Geoip) and geoip.watcher is not None:
            geoip.watcher.ensure_running()

    def note_change(self, _names: object = None) -> None:
        # Unlocked: two bumps racing may count once, and any change of the
        # count is all a reader compares.
        self.changes += 1

    def data_reloaded(self) -> None:
        """A plugin's live data (a geoip database or nets file) was reloaded and is in place."""
        self.note_change()
        for listener in self.reload_listeners:
            listener()

    def check(self, plugin: str, resource: str, dync: bool) -> None:
        """Raise ConfigError unless ``plugin!resource`` may be used by a DYNA (or DYNC)."""
        found = self.plugins.get(plugin)
        if found is None:
            raise ConfigError(f"no such plugin {plugin!r}")
        if not found.has(resource):
            raise ConfigError(f"resolver plugin {plugin!r} rejected resource name {resource!r}")
        if not dync and found.may_cname(resource):
            raise ConfigError(
                f"resolver plugin {plugin!r}: resource {resource!r} may answer with a CNAME, "
                "so it can only be used by DYNC"
            )

    def resolve(
        self,
        plugin: str,
        resource: str,
        client: ClientInfo,
        states: States | None = None,
        rng: random.Random | None = None,
    ) -> DynamicResult:
        """Answer one lookup; ``states`` defaults to the monitor's current snapshot."""
        return self.plugins[plugin].resolve(
            resource, client, self.monitor.states if states is None else states, rng or self._rng
        )


def load_plugins(raw: ConfigHash, monitor: Monitor, cfgdir: Path | None = None) -> Resolvers:
    """Every resolver plugin of the ``plugins`` section (its monitored resources added to ``monitor``).

    ``cfgdir`` is where relative geoip data files are found (under ``geoip/``);
    by default the directory of the file the section was read from.
    """
    for name, conf in raw.items():
        where = raw.key_pos.get(name, raw.pos)
        if (
            name not in LOADERS
            and name not in MONITOR_ONLY
            and name not in ("static", "null", "reflect", "metafo", "geoip")
        ):
            raise ConfigError(f"{where}: plugins: no such plugin {name!r}")
        if not isinstance(conf, ConfigHash):
            raise ConfigError(f"{conf.pos}: plugins: the value of {name!r} must be a hash")
    plugins: dict[str, Resolver] = {"null": Null(), "reflect": Reflect()}
    empty = ConfigHash(Position(raw.pos.path, 0))
    static_conf = raw.get("static")
    plugins["static"] = load_static(static_conf if isinstance(static_conf, ConfigHash) else empty)
    # geoip first: its datacenters may synthesize metafo resources (never the reverse).
    geoip: Geoip | None = None
    geoip_conf = raw.get("geoip")
    if isinstance(geoip_conf, ConfigHash):
        geoip = load_geoip(geoip_conf, monitor, Path(raw.pos.path).parent if cfgdir is None else cfgdir)
        plugins["geoip"] = geoip
    metafo: Metafo | None = None
    metafo_conf = raw.get("metafo")
    if geoip is not None and geoip.synthesized.get("metafo"):
        metafo_conf = _with_resources(metafo_conf, geoip.synthesized["metafo"], raw.pos)
    if isinstance(metafo_conf, ConfigHash):
        metafo = load_metafo(metafo_conf, monitor)
        plugins["metafo"] = metafo
    # gdnsd 3.8.1's order (it shows in ``gdnsdctl states``): the plugins
    # configured under ``plugins``, in the config's order, then those only
    # geoip's or metafo's datacenters use, in the order they first did.
    order = [name for name in raw if name in LOADERS]
    for meta in (geoip, metafo):
        if meta is not None:
            order += [name for name in meta.synthesized if name in LOADERS and name not in order]
    for name in order:
        loader = LOADERS[name]
        own = raw.get(name)
        # gdnsd's order (it shows in ``gdnsdctl states``): geoip's, then metafo's.
        synthesized = dict(geoip.synthesized.get(name, {}) if geoip is not None else {})
        synthesized.update(metafo.synthesized.get(name, {}) if metafo is not None else {})
        if not isinstance(own, ConfigHash) and not synthesized:
            continue
        merged = ConfigHash(own.pos if isinstance(own, ConfigHash) else empty.pos)
        if isinstance(own, ConfigHash):
            merged.update(own)
            merged.key_pos.update(own.key_pos)
        for res, sub in synthesized.items():
            merged[res] = sub
            merged.key_pos[res] = sub.pos
        plugins[name] = loader(merged, monitor, name)
    if metafo is not None:
        unknown = set(metafo.synthesized) - set(LOADERS)
        if unknown:
            raise ConfigError(
                f"plugin metafo: cannot synthesize resources for plugin(s) {sorted(unknown)}"
            )
        metafo.bind(plugins.get)
    if geoip is not None:
        unknown = set(geoip.synthesized) - set(LOADERS) - {"metafo"}
        if unknown:
            raise ConfigError(
                f"plugin geoip: cannot synthesize resources for plugin(s) {sorted(unknown)}"
            )
        geoip.bind(plugins.get)
    resolvers = Resolvers(plugins, monitor)
    if geoip is not None and geoip.watcher is not None:
        geoip.watcher.on_reload = resolvers.data_reloaded
    return resolvers


def _with_resources(
    conf: ConfigValue | None, extra: dict[str, ConfigHash], pos: Position
) -> ConfigHash:
    """metafo's config with the resources another plugin synthesized for it added."""
    merged = ConfigHash(conf.pos if isinstance(conf, ConfigHash) else pos)
    if isinstance(conf, ConfigHash):
        merged.update(conf)
        merged.key_pos.update(conf.key_pos)
    own = merged.get("resources")
    resources = ConfigHash(own.pos if isinstance(own, ConfigHash) else merged.pos)
    if isinstance(own, ConfigHash):
        resources.update(own)
        resources.key_pos.update(own.key_pos)
    for name, sub in extra.items():
        resources[name] = sub
        resources.key_pos[name] = sub.pos
    merged["resources"] = resources
    return merged
