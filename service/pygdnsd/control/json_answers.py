"""The JSON bodies of the control socket's stats and states answers, byte for byte as gdnsd's.

gdnsd 3.8.1 indents with tabs, separates keys with ``": "`` and ends with a
newline; with no monitored services its states answer is ``{``, an empty
line, ``}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pygdnsd.engine.stats import Stats

EMPTY_STATES = b"{\n\n}\n"


def stats_json(stats: Stats, uptime: int) -> bytes:
    return _gdnsd_json(stats.as_json_dict(uptime))


def states_json(states: Mapping[str, Any]) -> bytes:
    """``states`` maps each monitored service/resource to its state; none gives gdnsd's empty form."""
    if not states:
        return EMPTY_STATES
    return _gdnsd_json(dict(states))


def _gdnsd_json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent="\t", separators=(",", ": ")) + "\n").encode("ascii")
