"""What a running daemon tells systemd now and then: STATUS= and, with WatchdogSec, WATCHDOG=1.

Only under systemd (``$NOTIFY_SOCKET``); otherwise the thread never starts.
The watchdog interval comes from our own environment or, after a replace,
from the old daemon (systemd sets WATCHDOG_USEC for ExecStart only, and a
replacement is started by ExecReload), so it survives any number of replaces.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from pygdnsd.engine.stats import Stats
from pygdnsd.systemd import notify

log = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Summary:
    zones: int
    qps: float
    last_replace: float | None  # wall clock

    def text(self) -> str:
        replaced = (
            "no replace yet"
            if self.last_replace is None
            else "last replace " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.last_replace))
        )
        return f"serving {self.zones} zones, {self.qps:.0f} qps, {replaced}"


def answered(stats: Stats) -> int:
    return stats.udp["reqs"] + stats.tcp["reqs"]


class Observed(Protocol):
    """What the heartbeat reads from the daemon."""

    watchdog_usec: int
    last_replace: float | None

    def zone_count(self) -> int: ...

    def current_stats(self) -> Stats: ...


def interval(watchdog_usec: int) -> float:
    """Half of WatchdogSec (as sd_watchdog_enabled(3) advises), else the STATUS pace."""
    if watchdog_usec > 0:
        return min(STATUS_INTERVAL, watchdog_usec / 2_000_000)
    return STATUS_INTERVAL


class Heartbeat:
    def __init__(self, daemon: Observed) -> None:
        self.daemon = daemon
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not notify.under_systemd():
            return
        self._beat(0.0, 0)
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, elapsed: float, delta: int) -> None:
        daemon = self.daemon
        summary = Summary(daemon.zone_count(), delta / elapsed if elapsed > 0 else 0.0, daemon.last_replace)
        try:
            if daemon.watchdog_usec > 0:
                notify.watchdog()
            notify.status(summary.text())
        except notify.NotifyError as exc:
            log.warning("sd_notify: %s", exc)

    def _run(self) -> None:
        last_time = time.monotonic()
        last_count = answered(self.daemon.current_stats())
        while not self._stop.wait(interval(self.daemon.watchdog_usec)):
            now, count = time.monotonic(), answered(self.daemon.current_stats())
            self._beat(now - last_time, count - last_count)
            last_time, last_count = now, count

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(5.0)
