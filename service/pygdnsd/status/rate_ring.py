"""The last hour of query counts by rcode, for the status page's chart.

Every ``SAMPLE_SECONDS`` the status server stores the cumulative outcome
counters (``engine.stats.OUTCOME_COUNTERS``: noerror ... dropped, which add
up to every query) with the wall-clock time; rates are the differences of
neighbouring samples. Cumulative samples survive a replace as they are (the
counters do), so the hand-off carries the ring and the chart has no gap.

361 samples of 7 counters: a few kB in memory and in the hand-off.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pygdnsd.engine.stats import OUTCOME_COUNTERS

SAMPLE_SECONDS = 10.0
WINDOW_SECONDS = 3600.0
MAX_SAMPLES = int(WINDOW_SECONDS / SAMPLE_SECONDS) + 1


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall clock
    counts: tuple[int, ...]  # in OUTCOME_COUNTERS order


@dataclass(frozen=True, slots=True)
class Rate:
    """Queries per second of each outcome between two samples (``since`` and ``at``)."""

    since: float
    at: float
    per_second: tuple[float, ...]  # in OUTCOME_COUNTERS order


class RateRing:
    def __init__(self, samples: Sequence[Sample] = ()) -> None:
        self._samples: deque[Sample] = deque(samples, maxlen=MAX_SAMPLES)
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        """Whether a sample is due at wall-clock ``now``."""
        with self._lock:
            return not self._samples or now - self._samples[-1].at >= SAMPLE_SECONDS

    def add(self, at: float, outcomes: dict[str, int]) -> None:
        sample = Sample(at, tuple(outcomes.get(name, 0) for name in OUTCOME_COUNTERS))
        with self._lock:
            if self._samples and at <= self._samples[-1].at:
                return  # the clock went back: keep the chart's time axis in order
            self._samples.append(sample)

    def rates(self, now: float) -> list[Rate]:
        """Rates over the last hour before ``now``, oldest first."""
        with self._lock:
            samples = list(self._samples)
        out = []
        for before, after in itertools.pairwise(samples):
            if after.at < now - WINDOW_SECONDS:
                continue
            span = after.at - before.at
            # A counter that went back (a restart's hand-off lost them) shows as no traffic, not negative.
            per_second = tuple(max(0, b - a) / span for a, b in zip(before.counts, after.counts, strict=True))
            out.append(Rate(before.at, after.at, per_second))
        return out

    # --- across a replace ------------------------------------------------------

    def to_handoff(self) -> dict[str, Any]:
        with self._lock:
            return {"names": list(OUTCOME_COUNTERS), "samples": [[s.at, *s.counts] for s in self._samples]}

    @classmethod
    def from_handoff(cls, raw: object) -> RateRing:
        """The ring a previous daemon handed over, by counter name; empty if malformed."""
        if not isinstance(raw, dict):
            return cls()
        names, rows = raw.get("names"), raw.get("samples")
        if not isinstance(names, list) or not isinstance(rows, list):
            return cls()
        samples = []
        for row in rows[-MAX_SAMPLES:]:
            if not isinstance(row, list) or len(row) != len(names) + 1:
                return cls()
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row):
                return cls()
            by_name = dict(zip(names, row[1:], strict=True))
            samples.append(Sample(float(row[0]), tuple(int(by_name.get(name, 0)) for name in OUTCOME_COUNTERS)))
        return cls(samples)
