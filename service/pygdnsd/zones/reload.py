"""Zone reload in place: load the whole new zone set off the serving path, then swap.

The serving threads keep answering from the old set while the new one loads;
the swap is one reference assignment in the Responder, so every query sees
either all of the old data or all of the new. Any error keeps the old data.
Reloads never overlap: a second request waits for the first.

A zones directory that has vanished is an error when zones are served: a
reload refuses to swap them for nothing (which would answer every query
REFUSED) and the old zones serve on. gdnsd 3.8.1 reloads to no zones then,
saying so only at info level. A daemon that is meant to serve no zones keeps
the directory, empty: a reload of an empty directory goes through, as does
one of a missing directory while no zone is served (a start without the
directory serves no zones, as gdnsd's does).

A replace keeps the same rule, only more strictly: a new daemon that finds
the directory gone refuses to take over from a running daemon, whatever
that one serves, because gdnsd's takeover never says how many zones the
old daemon has. gdnsd 3.8.1 takes over with no zones then (measured: every
query REFUSED afterwards) and logs nothing about it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pygdnsd.errors import GdnsdError, ZoneError, describe
from pygdnsd.zones.model import ZoneSet

log = logging.getLogger(__name__)

Loader = Callable[[], ZoneSet]
Swap = Callable[[ZoneSet], None]
Serving = Callable[[], ZoneSet]
# Told of every reload once it ended: the seconds it took, and why it failed (None: it worked).
Observer = Callable[[float, str | None], None]


def refuse_vanished_dir(zones_dir: Path, new: ZoneSet, serving: ZoneSet) -> None:
    """Raise ZoneError if ``new`` is empty only because ``zones_dir`` is gone while zones are served."""
    if new.zones or not serving.zones or zones_dir.is_dir():
        return
    raise ZoneError(
        f"the zones directory does not exist: not reloading to no zones; the {len(serving.zones)} "
        "zone(s) loaded before serve on (restore the directory; to serve no zones, leave it in place, empty)",
        str(zones_dir),
    )


def refuse_replacing_without_dir(zones_dir: Path, new: ZoneSet) -> None:
    """Raise ZoneError if a new daemon would take over with no zones only because ``zones_dir`` is gone."""
    if new.zones or zones_dir.is_dir():
        return
    raise ZoneError(
        "the zones directory does not exist: not taking over from the running daemon with no zones; "
        "restore the directory, or create it empty to serve no zones",
        str(zones_dir),
    )


class ZoneReloader:
    """Runs reloads: synchronously (``reload``, ``try_reload``) or on its own thread (``request``).

    With ``zones_dir`` and ``serving`` (the zones served now), a reload that
    finds the directory gone fails instead of dropping every zone.
    ``observe`` hears how each reload ended (the status page's history).
    """

    def __init__(
        self,
        load: Loader,
        swap: Swap,
        zones_dir: Path | None = None,
        serving: Serving | None = None,
        observe: Observer | None = None,
    ) -> None:
        self._load = load
        self._swap = swap
        self._observe = observe
        self._zones_dir = zones_dir
        self._serving = serving
        self._serial = threading.Lock()
        self._wanted = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0  # successful ones, for status and tests
        self.failures = 0

    def reload(self) -> bool:
        """Load and swap; False (old data kept, reason logged) on any error."""
        return self.try_reload() is None

    def try_reload(self) -> str | None:
        """Load and swap; None, or why it failed (old data kept, the reason logged too)."""
        with self._serial:
            began = time.monotonic()
            reason = self._reload()
            if self._observe is not None:
                self._observe(time.monotonic() - began, reason)
            return reason

    def _reload(self) -> str | None:
        try:
            zones = self._load()
            if self._zones_dir is not None and self._serving is not None:
                refuse_vanished_dir(self._zones_dir, zones, self._serving())
        except Exception as exc:  # any failure must leave the old data serving
            reason = describe(exc)
            log.error("%s", reason)
            if not isinstance(exc, GdnsdError):
                log.debug("the failed reload's traceback:", exc_info=True)
            log.error("Reloading zone data failed")
            self.failures += 1
            return reason
        self._swap(zones)
        self.reloads += 1
        log.info("Zone data reloaded (%d zones)", len(zones.zones))
        return None

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
