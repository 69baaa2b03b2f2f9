"""The extfile monitor's data file: ``thing => UP|DOWN[/ttl]`` (vscf hash).

``man gdnsd-plugin-extfile``: a resource missing from the file is DOWN when
``def_down`` is set, UP otherwise; a missing TTL is ``def_ttl`` (default MAX).
TTLs only matter in direct mode: in monitor mode the anti-flap machine makes
its own. A missing file counts as an empty one.
"""

from __future__ import annotations

import logging
from pathlib import Path

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


def read_states(path: Path) -> dict[str, tuple[bool, int | None]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    return parse_states(data, str(path))


def results_for(
    found: dict[str, tuple[bool, int | None]], things: list[str], check: Extfile
) -> dict[str, Sttl]:
    """The state of each monitored thing, defaults applied."""
    out: dict[str, Sttl] = {}
    for thing in things:
        entry = found.get(thing)
        if entry is None:
            log.warning(
                "extfile: '%s' missing from %s, defaulting to %s",
                thing,
                check.file,
                "DOWN" if check.def_down else "UP",
            )
            out[thing] = Sttl(down=check.def_down, ttl=check.def_ttl)
            continue
        down, ttl = entry
        out[thing] = Sttl(down=down, ttl=check.def_ttl if ttl is None else min(ttl, TTL_MAX))
    return out
