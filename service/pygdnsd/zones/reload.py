"""Zone reload in place: load the whole new zone set off the serving path, then swap.

The serving threads keep answering from the old set while the new one loads;
the swap is one reference assignment in the Responder, so every query sees
either all of the old data or all of the new. Any error keeps the old data.
Reloads never overlap: a second request waits for the first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pygdnsd.zones.model import ZoneSet

log = logging.getLogger(__name__)

Loader = Callable[[], ZoneSet]
Swap = Callable[[ZoneSet], None]


class ZoneReloader:
    """Runs reloads: synchronously (``reload``) or on its own thread (``request``)."""

    def __init__(self, load: Loader, swap: Swap) -> None:
        self._load = load
        self._swap = swap
        self._serial = threading.Lock()
        self._wanted = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0  # successful ones, for status and tests
        self.failures = 0

    def reload(self) -> bool:
        """Load and swap; False (old data kept, reason logged) on any error."""
        with self._serial:
            try:
                zones = self._load()
            except Exception as exc:  # any failure must leave the old data serving
                log.error("%s", exc)
                log.error("Reloading zone data failed")
                self.failures += 1
                return False
            self._swap(zones)
            self.reloads += 1
            log.info("Zone data reloaded (%d zones)", len(zones.zones))
            return True

    def start(self) -> None:
        """Start the thread that serves ``request`` (SIGHUP, the auto-reload watcher)."""
        self._thread = threading.Thread(target=self._run, name="zone-reload", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a reload soon; requests made while one loads coalesce into one more."""
        self._wanted.set()

    def close(self) -> None:
        self._closing.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)

    def _run(self) -> None:
        while not self._closing.is_set():
            self._wanted.wait()
            if self._closing.is_set():
                return
            self._wanted.clear()
            self.reload()
