"""gdnsd's anti-flap state machine for one monitored resource (pure functions).

From ``man gdnsd.config`` (service_types) and checked against gdnsd 3.8.1's
logs: the first result sets the state directly (UP with TTL
``down_thresh * interval``, DOWN with ``up_thresh * interval``). While UP,
every failure counts (successes in between or not) and ``down_thresh``
failures make it DOWN; ``ok_thresh`` successes in a row reset the count.
While DOWN, ``up_thresh`` successes in a row make it UP. The TTL is always
the least time until the state could change: e.g. UP with 1 of 2 failures
at interval 2 is ``UP/2``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pygdnsd.monitoring.sttl import Sttl


@dataclass(frozen=True, slots=True)
class Thresholds:
    up_thresh: int = 20
    ok_thresh: int = 10
    down_thresh: int = 10
    interval: int = 10


@dataclass(frozen=True, slots=True)
class Tracker:
    """Where one resource stands: state, failures while UP, success streak."""

    down: bool
    failures: int = 0
    streak: int = 0

    def sttl(self, t: Thresholds) -> Sttl:
        if self.down:
            return Sttl(down=True, ttl=(t.up_thresh - self.streak) * t.interval)
        return Sttl(down=False, ttl=(t.down_thresh - self.failures) * t.interval)


def first_result(ok: bool) -> Tracker:
    """The state set by the initial round: no anti-flap."""
    return Tracker(down=not ok)


def next_result(tracker: Tracker, ok: bool, t: Thresholds) -> Tracker:
    """The tracker after one more check result."""
    if tracker.down:
        if not ok:
            return Tracker(down=True)
        streak = tracker.streak + 1
        if streak >= t.up_thresh:
            return Tracker(down=False)
        return Tracker(down=True, streak=streak)
    if ok:
        streak = tracker.streak + 1
        if tracker.failures and streak >= t.ok_thresh:
            return Tracker(down=False)
        return Tracker(down=False, failures=tracker.failures, streak=streak)
    failures = tracker.failures + 1
    if failures >= t.down_thresh:
        return Tracker(down=True)
    return Tracker(down=False, failures=failures)
