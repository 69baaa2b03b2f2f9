"""Remembered geoip decisions: (resource, datacenter list) -> the answer, while nothing changes.

A map's table sends every client network to one of a few datacenter lists
(GeoLite2 Country: 196,471 networks, 6 lists in the test map), and the
failover walk over a list (sub-plugin answers, monitored states) is most of
a geoip answer's cost. So the walk's result is kept per resource and list;
the query then costs one table lookup. The whole store is dropped when a
map's table is replaced, and when the monitored states (admin_state
included) differ from those the results were computed with. Results that
depend on chance or on the client (weighted, reflect sub-plugins) are not
kept: ``cacheable`` says which resources qualify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pygdnsd.monitoring.sttl import Sttl
from pygdnsd.plugins.result import DynamicResult

# Bound on remembered results: resources x lists is small in practice; this
# only stops a pathological config (thousands of lists) from growing memory.
MAX_ENTRIES = 65536


@dataclass
class Decisions:
    _results: dict[tuple[str, int], DynamicResult] = field(default_factory=dict)
    _states: Mapping[str, Sttl] | None = None
    _generation: int = -1

    def get(
        self, resource: str, dclist: int, states: Mapping[str, Sttl], generation: int
    ) -> DynamicResult | None:
        """The remembered answer, if still valid for ``states`` and table ``generation``."""
        if states is not self._states or generation != self._generation:
            self._revalidate(states, generation)
            return None
        return self._results.get((resource, dclist))

    def put(self, resource: str, dclist: int, result: DynamicResult) -> None:
        if len(self._results) >= MAX_ENTRIES:
            self._results.clear()
        self._results[(resource, dclist)] = result

    def __len__(self) -> int:
        return len(self._results)

    def clear(self) -> None:
        self._results.clear()
        self._states = None

    def _revalidate(self, states: Mapping[str, Sttl], generation: int) -> None:
        # A new snapshot object is published after every check round even when
        # no state changed: compare contents once, not per query.
        if generation != self._generation or self._states is None or dict(states) != dict(
            self._states
        ):
            self._results.clear()
        self._states = states
        self._generation = generation
