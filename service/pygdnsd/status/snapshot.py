"""Everything the status endpoints show, read from the daemon at one moment.

``collect`` asks the daemon (a ``StatusSource``) once per request; the
renderers (``metrics``, ``page``) and ``/json`` then work from the same
``Snapshot``, so one answer never mixes two moments. The counters are the
daemon's totals (its own and every worker's, ``Instance.total_stats``),
which is also what ``gdnsdctl stats`` reads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pygdnsd import __version__
from pygdnsd.engine.stats import Stats
from pygdnsd.monitoring.monitor import StateRow
from pygdnsd.status import process
from pygdnsd.status.timeline import TimelineView
from pygdnsd.status.zone_facts import ZoneFacts


class StatusSource(Protocol):
    """What the status endpoints read from the daemon (``daemon.daemon.Daemon`` is one)."""

    def current_stats(self) -> Stats:
        """Every counter: this daemon's, its workers', and its predecessors' (a fresh copy)."""
        ...

    def uptime(self) -> int:
        """Seconds since the first daemon of this run started (a replace carries it on)."""
        ...

    def started_wall(self) -> float:
        """Wall clock of that start."""
        ...

    def state_rows(self) -> Sequence[StateRow]: ...

    def zone_facts(self) -> Sequence[ZoneFacts]: ...

    def worker_pids(self) -> Sequence[int]: ...

    def timeline_view(self) -> TimelineView: ...


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # wall clock
    hostname: str
    stats: Stats
    uptime: int
    started_at: float  # wall clock of the first daemon's start (uptime 0)
    pid: int
    version: str
    process_started: float  # wall clock of this process's start
    resident_bytes: int  # this process
    worker_pids: tuple[int, ...]
    workers_resident_bytes: int
    services: tuple[StateRow, ...]
    zones: tuple[ZoneFacts, ...]
    timeline: TimelineView


def collect(source: StatusSource) -> Snapshot:
    pid = os.getpid()
    workers = tuple(source.worker_pids())
    worker_bytes = 0
    for worker in workers:
        with contextlib.suppress(OSError):  # one exiting just now
            worker_bytes += process.resident_bytes(worker)
    stats = source.current_stats()
    return Snapshot(
        taken_at=time.time(),
        hostname=socket.gethostname(),
        stats=stats,
        uptime=source.uptime(),
        started_at=source.started_wall(),
        pid=pid,
        version=__version__,
        process_started=process.start_time(pid),
        resident_bytes=process.resident_bytes(pid),
        worker_pids=workers,
        workers_resident_bytes=worker_bytes,
        services=tuple(source.state_rows()),
        zones=tuple(source.zone_facts()),
        timeline=source.timeline_view(),
    )
