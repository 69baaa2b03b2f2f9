"""A loaded config -> the monitor and resolver plugins a daemon (or checkconf) runs with.

The daemon's order (``man gdnsd``: monitoring state is known before the
first answer): ``build_dynamic`` -> ``load_zones(..., dynamic=resolvers)``
-> ``Responder(..., dynamic=resolvers)`` -> ``monitor.initial_round()``
before declaring itself ready -> ``monitor.start()``; ``monitor.stop()`` on
the way out. ``monitor.states_json()`` answers control request ``E``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pygdnsd.config.options import CONFIG_FILE, Config
from pygdnsd.config.scalars import c_string
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, ConfigValue, Position
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor, UnknownServiceType
from pygdnsd.monitoring.service_types import parse_service_types
from pygdnsd.plugins.registry import Resolvers, load_plugins


@dataclass(frozen=True)
class DynamicSetup:
    """What DYNA/DYNC need at run time: the health monitor and the plugins reading it."""

    monitor: Monitor
    resolvers: Resolvers


def build_dynamic(config: Config) -> DynamicSetup:
    """The monitor and resolvers of ``config``, nothing started.

    Every ``ConfigError`` names the config file: messages the monitoring and
    plugin code word without a position get the file and the section prefixed.
    """
    plugins = config.plugins
    state_dir = config.state_dir
    config_file = str(config.cfgdir / CONFIG_FILE)
    try:
        monitor = Monitor(
            parse_service_types(config.service_types, state_dir, defer_errors=True), state_dir
        )
    except ConfigError as exc:
        raise _located(exc, config_file, "service_types") from None
    try:
        resolvers = load_plugins(plugins, monitor, config.cfgdir)
    except UnknownServiceType as exc:
        # The monitor knows the name, not where it was written: the first
        # service_types in the plugins section that names it.
        where = _service_type_reference(plugins, exc.service_type)
        if where is None:
            raise _located(exc, config_file, "plugins") from None
        raise ConfigError(f"{where}: plugins: {exc}") from None
    except ConfigError as exc:
        raise _located(exc, config_file, "plugins") from None
    return DynamicSetup(monitor, resolvers)


def _service_type_reference(value: ConfigValue, name: str) -> Position | None:
    """Where the first ``service_types`` under ``value`` names ``name``."""
    if isinstance(value, ConfigList):
        children: list[ConfigValue] = list(value)
    elif isinstance(value, ConfigHash):
        children = []
        for key, child in value.items():
            if key == "service_types":
                named = list(child) if isinstance(child, ConfigList) else [child]
                for item in named:
                    if isinstance(item, ConfigScalar) and c_string(item) == name:
                        return item.pos
            children.append(child)
    else:
        return None
    for child in children:
        found = _service_type_reference(child, name)
        if found is not None:
            return found
    return None


def _located(exc: ConfigError, config_file: str, section: str) -> ConfigError:
    """``exc`` itself when it already names the file, else one that does."""
    message = str(exc)
    if message.startswith(config_file):
        return exc
    return ConfigError(f"{config_file}: {section}: {message}")
