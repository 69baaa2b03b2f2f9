"""Remembered geoip answers: (resource, datacenter list, scope) -> the answer, while nothing changes.

A map's table sends every client network to one of a few datacenter lists
(GeoLite2 Country in the bench map: 196,471 networks, 6 lists), and the
failover walk over a list (sub-plugin answers, monitored states) was most
of a geoip answer's cost. So the answer is kept per resource, list and
client-subnet scope: every client network of one list and one scope gets
the same answer, so this holds what a memo per (resource, client network at
its scope) would hold, in far fewer entries (at most resources x lists x
129 scopes). A query then costs one table lookup (``tables.MapTable.lookup``,
a bisection of the flattened table: no database is read after loading) and
one dict lookup, and returns the same ``DynamicResult`` object each time,
which the engine's answer cache keys its prepared answers on.

The answers live on the ``MapTable`` they were computed from, so a map
reloaded from a new database or nets file starts with none. Each carries
the epoch of the monitored states (admin_state included) it was computed
with, and counts only while the states have that epoch's content: a state
change retires every answer at once, and an answer a thread finishes from
states that changed meanwhile is stored under its old epoch, never served.
A table holding ``MAX_ENTRIES`` starts over. Answers that depend on chance
or on the client (weighted, reflect sub-plugins) are not kept:
``GeoipResource.cacheable`` says which resources qualify.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pygdnsd.monitoring.sttl import Sttl
from pygdnsd.plugins.result import DynamicResult

# Bound on the answers one table remembers: resources x lists x scopes is a
# few thousand in practice; this only stops a pathological config (thousands
# of lists) from growing memory without end.
MAX_ENTRIES = 65536

Key = tuple[str, int, int]  # resource, datacenter list number, client-subnet scope
Answers = dict[Key, tuple[int, DynamicResult]]  # key -> (states epoch, answer)


def remember(answers: Answers, key: Key, epoch: int, result: DynamicResult) -> None:
    """Keep ``result`` under ``key``, starting over when the table holds ``MAX_ENTRIES``."""
    if len(answers) >= MAX_ENTRIES:
        answers.clear()
    answers[key] = (epoch, result)


@dataclass
class Decisions:
    """The epoch of the monitored states: a new number whenever their content changes."""

    _current: tuple[Mapping[str, Sttl] | None, int] = (None, 0)
    _epochs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def epoch(self, states: Mapping[str, Sttl]) -> int:
        """The epoch of ``states``.

        The monitor publishes a new snapshot object after every check round,
        even when no state changed: contents are compared once per snapshot,
        not per query. ``_current`` is one tuple, replaced whole, and every
        new content draws a number no other content had, so threads racing
        here can only retire answers early, never pair one with other states.
        """
        seen, epoch = self._current
        if states is seen:
            return epoch
        if seen is None or dict(states) != dict(seen):
            epoch = next(self._epochs)
        self._current = (states, epoch)
        return epoch
