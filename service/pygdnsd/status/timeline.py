"""What happened to the daemon: reloads and replaces, and monitored state changes.

The totals (reloads, replaces, their failures, the last durations, the
daemon's generation) are counters of the whole service, not of one process:
a replace hands them to the new daemon (``to_handoff``/``from_handoff``, in
the hand-off's metadata) with the recent events, so ``/metrics`` never sees
them go back and the status page shows history from before the replace.

Who records what: a reload is recorded by the daemon that ran it; a replace
that worked by the new daemon once the old one is gone (its generation is
one more); a replace that failed by the daemon that goes on serving, which
is the old one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RELOAD = "reload"
REPLACE = "replace"
KINDS = (RELOAD, REPLACE)
# Enough for a page and a hand-off of a few kB: Prometheus keeps the long history.
MAX_EVENTS = 50
MAX_TRANSITIONS = 100


@dataclass(frozen=True, slots=True)
class Event:
    """One reload or replace: when it ended (wall clock), how long it took, how it went."""

    kind: str
    at: float
    seconds: float
    ok: bool
    detail: str = ""  # why it failed, or who serves now


@dataclass(frozen=True, slots=True)
class Transition:
    """A monitored name's state changed (texts as ``gdnsdctl states`` shows them)."""

    at: float
    name: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Totals:
    attempts: int = 0
    failures: int = 0
    last_seconds: float | None = None
    last_at: float | None = None
    last_ok: bool | None = None


@dataclass(frozen=True)
class TimelineView:
    """A consistent copy of a Timeline, newest events first."""

    generation: int
    totals: Mapping[str, Totals]
    events: tuple[Event, ...]
    transitions: tuple[Transition, ...]


@dataclass
class Timeline:
    """Recorded from several threads (reloads, the control worker, the monitor), read by the status server."""

    generation: int = 1  # 1 for a fresh start, one more with each replace
    _totals: dict[str, Totals] = field(default_factory=lambda: {kind: Totals() for kind in KINDS})
    _events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    _transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=MAX_TRANSITIONS))
    _states: dict[str, str] = field(default_factory=dict)  # each name's last known state text
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: Event) -> None:
        with self._lock:
            before = self._totals[event.kind]
            self._totals[event.kind] = Totals(
                before.attempts + 1, before.failures + (not event.ok), event.seconds, event.at, event.ok
            )
            if event.kind == REPLACE and event.ok:
                self.generation += 1
            self._events.append(event)

    def observe_states(self, states: Mapping[str, str], at: float) -> None:
        """The monitored names' states now; a name whose state differs from the last known one changed."""
        with self._lock:
            for name, state in states.items():
                before = self._states.get(name)
                if before is not None and before != state:
                    self._transitions.append(Transition(at, name, before, state))
                self._states[name] = state

    def view(self) -> TimelineView:
        with self._lock:
            return TimelineView(
                self.generation,
                dict(self._totals),
                tuple(reversed(self._events)),
                tuple(reversed(self._transitions)),
            )

    # --- across a replace ------------------------------------------------------

    def to_handoff(self) -> dict[str, Any]:
        with self._lock:
            return {
                "generation": self.generation,
                "totals": {
                    kind: [t.attempts, t.failures, t.last_seconds, t.last_at, t.last_ok]
                    for kind, t in self._totals.items()
                },
                "events": [[e.kind, e.at, e.seconds, e.ok, e.detail] for e in self._events],
                "transitions": [[t.at, t.name, t.before, t.after] for t in self._transitions],
                "states": dict(self._states),
            }

    @classmethod
    def from_handoff(cls, raw: object) -> Timeline:
        """The timeline a previous daemon handed over; a fresh one for anything malformed.

        A hand-off from a daemon without a status timeline (older, or C
        gdnsd's) has none: the counts start over, as they must then.
        """
        timeline = cls()
        if not isinstance(raw, dict):
            return timeline
        try:
            generation = raw["generation"]
            totals = {kind: Totals(*_totals_fields(raw["totals"][kind])) for kind in KINDS}
            events = [Event(*_event_fields(item)) for item in raw["events"]][-MAX_EVENTS:]
            transitions = [Transition(*_transition_fields(item)) for item in raw["transitions"]][-MAX_TRANSITIONS:]
            states = {str(k): str(v) for k, v in dict(raw["states"]).items()}
            if not isinstance(generation, int) or generation < 1:
                raise ValueError(generation)
        except (KeyError, TypeError, ValueError):
            return timeline
        timeline.generation = generation
        timeline._totals = totals
        timeline._events.extend(events)
        timeline._transitions.extend(transitions)
        timeline._states = states
        return timeline


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


def _optional(value: object) -> float | None:
    return None if value is None else _number(value)


def _totals_fields(raw: Sequence[object]) -> tuple[int, int, float | None, float | None, bool | None]:
    attempts, failures, seconds, at, ok = raw
    if not isinstance(attempts, int) or not isinstance(failures, int) or not 0 <= failures <= attempts:
        raise ValueError(raw)
    if ok is not None and not isinstance(ok, bool):
        raise TypeError(ok)
    return attempts, failures, _optional(seconds), _optional(at), ok


def _event_fields(raw: Sequence[object]) -> tuple[str, float, float, bool, str]:
    kind, at, seconds, ok, detail = raw
    if kind not in KINDS or not isinstance(ok, bool):
        raise ValueError(raw)
    return str(kind), _number(at), _number(seconds), ok, str(detail)


def _transition_fields(raw: Sequence[object]) -> tuple[float, str, str, str]:
    at, name, before, after = raw
    return _number(at), str(name), str(before), str(after)
