"""The extfile monitor's data file: ``thing => UP|DOWN[/ttl]`` (vscf hash).

``man gdnsd-plugin-extfile``: a resource missing from the file is DOWN when
``def_down`` is set, UP otherwise; a missing TTL is ``def_ttl`` (default MAX).
TTLs only matter in direct mode: in monitor mode the anti-flap machine makes
its own. A file that cannot be read or parsed changes nothing (gdnsd 3.8.1).
What a load logs is worded as gdnsd words it (``plugin_extfile: Service type
'NAME': ...``): operators and gdnsd's own test suite grep for those lines.
"""

from __future__ import annotations

import logging

from pygdnsd.config.vscf import ConfigHash, ConfigScalar, parse_bytes
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.admin_state import parse_state_value
from pygdnsd.monitoring.service_types import Extfile
from pygdnsd.monitoring.sttl import TTL_MAX, Sttl

log = logging.getLogger("pygdnsd.monitoring")


def parse_states(data: bytes, path: str) -> dict[str, tuple[bool, int | None]]:
    """thing -> (down, ttl or None when the file gave none)."""
    top = parse_bytes(data, path)
    if not isinstance(top, ConfigHash):
        raise ConfigError(f"{path}: extfile data must be a hash of 'resource => STATE[/TTL]'")
    out: dict[str, tuple[bool, int | None]] = {}
    for key, value in top.items():
        state = parse_state_value(value) if isinstance(value, ConfigScalar) else None
        if state is None:
            raise ConfigError(
                f"{top.key_pos[key]}: extfile: bad state for {key!r} (UP or DOWN, optional /TTL)"
            )
        has_ttl = "/" in value
        out[key] = (state.down, state.ttl if has_ttl else None)
    return out


def load(service_type: str, check: Extfile, things: list[str]) -> dict[str, Sttl] | None:
    """The states of ``things`` from the service type's file; None when it cannot be loaded.

    Logs what gdnsd logs: an error for a file it cannot read or parse, a
    warning for each thing the file does not name (defaulted) and for each
    TTL a monitor-mode file gives.
    """
    where = f"plugin_extfile: Service type '{service_type}'"
    try:
        found = parse_states(check.file.read_bytes(), str(check.file))
    except OSError as exc:
        log.error("%s: loading file '%s' failed: %s", where, check.file, exc.strerror or exc)
        return None
    except ConfigError as exc:
        log.error("%s: %s", where, exc)
        log.error("%s: file load failed, no updates applied", where)
        return None
    for thing in things:
        entry = found.get(thing)
        if entry is None:
            log.warning("%s: '%s' was defaulted! (not specified by input file)", where, thing)
        elif entry[1] is not None and not check.direct:
            log.warning("%s: TTL value for '%s' in file '%s' ignored in 'monitor' mode", where, thing, check.file)
    return results_for(found, things, check)


def log_loaded(service_type: str, check: Extfile) -> None:
    """gdnsd's line once a load's states are applied (after the state changes it made)."""
    log.debug("plugin_extfile: Service type '%s': loaded new data from file '%s'", service_type, check.file)


def results_for(
    found: dict[str, tuple[bool, int | None]], things: list[str], check: Extfile
) -> dict[str, Sttl]:
    """The state of each monitored thing, defaults applied."""
    out: dict[str, Sttl] = {}
    for thing in things:
        entry = found.get(thing)
        if entry is None:
            out[thing] = Sttl(down=check.def_down, ttl=check.def_ttl)
            continue
        down, ttl = entry
        out[thing] = Sttl(down=down, ttl=check.def_ttl if ttl is None else min(ttl, TTL_MAX))
    return out
