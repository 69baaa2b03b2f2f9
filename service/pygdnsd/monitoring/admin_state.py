"""The ``admin_state`` file: operator overrides of monitored states.

A vscf hash of ``resource => UP|DOWN[/ttl]`` (``man gdnsd``, ADMIN STATE
FILE). Keys are shell globs matched against every state name; lines apply in
order, so a later line wins over an earlier one. A forced state without a
TTL gets TTL MAX (as gdnsd 3.8.1 logs: ``forced to DOWN/MAX``). A missing
file means no overrides.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pygdnsd.config.scalars import strtoul
from pygdnsd.config.vscf import ConfigHash, ConfigScalar, parse_bytes
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.sttl import TTL_MAX, Sttl

FILE_NAME = "admin_state"


@dataclass(frozen=True)
class Override:
    pattern: str
    state: Sttl


def parse_state_value(text: str) -> Sttl | None:
    """``UP``, ``DOWN/30`` ... as an Sttl, or None when malformed."""
    state, _, ttl_text = text.partition("/")
    if state.upper() not in ("UP", "DOWN"):
        return None
    ttl = TTL_MAX
    if ttl_text:
        number = strtoul(ttl_text)
        if number is None or number > TTL_MAX:
            return None
        ttl = number
    return Sttl(down=state.upper() == "DOWN", ttl=ttl)


def parse_overrides(data: bytes, path: str) -> tuple[Override, ...]:
    top = parse_bytes(data, path)
    if not isinstance(top, ConfigHash):
        raise ConfigError(f"{path}: admin_state must be a hash of 'resource => STATE[/TTL]'")
    out = []
    for key, value in top.items():
        state = parse_state_value(value) if isinstance(value, ConfigScalar) else None
        if state is None:
            raise ConfigError(
                f"{top.key_pos[key]}: admin_state: the value of {key!r} must be UP or DOWN, "
                "optionally followed by /TTL"
            )
        out.append(Override(key, Sttl(down=state.down, ttl=state.ttl, forced=True)))
    return tuple(out)


def read_overrides(path: Path) -> tuple[Override, ...]:
    """The overrides in ``path``; none when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ()
    # gdnsd applies a last line that has no newline; our vscf parser wants one.
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return parse_overrides(data, str(path))


def unmatched(overrides: Iterable[Override], names: Iterable[str]) -> list[str]:
    """The globs that match no name (gdnsd warns about each)."""
    names = tuple(names)
    return [
        o.pattern for o in overrides if not any(fnmatch.fnmatchcase(n, o.pattern) for n in names)
    ]


def forced_states(overrides: Iterable[Override], names: Iterable[str]) -> dict[str, Sttl]:
    """name -> forced state, for every name some override's glob matches (last match wins)."""
    overrides = tuple(overrides)
    out: dict[str, Sttl] = {}
    for name in names:
        for override in overrides:
            if fnmatch.fnmatchcase(name, override.pattern):
                out[name] = override.state
    return out
