"""A map as served: its current table, replaced when one of its files changes.

gdnsd watches a map's database and nets file and rebuilds the map when one
is replaced, keeping the old one (and logging the file) when the new data
is bad or the file disappeared. Here the process that watches (the daemon's
instance; or whichever process answers first, for an engine embedded
without the daemon) runs one thread polling the files' stamps every
``POLL`` seconds; a change is loaded once the stamps held still for one more
poll, so a file still being written is not read half-way, and new answers
follow within about 2 * POLL plus the build (GeoLite2 Country: 0.7 s) of the
replacement.

Worker processes forked from a watching process do not watch: after a
reload the instance forks new workers (``Watcher.on_reload``, the zone
reload's way), so a table is built once and the workers share it
copy-on-write. Measured with a generated City database (1.2M networks,
60 MB) under ``udp_threads => 4``, PSS summed over the 4 processes: when
every worker built its own (and a reference cycle in the build kept its
leftovers, see ``tables._Geographic.under``), one update took the daemon
from 681 MB to 3,678 MB, and each process spent about 6 s of CPU on it; now
539 MB at start, 782 MB after one update and after two (1,238 and 1,501 MB
at the peaks). gdnsd: 140 MB, 283 MB at the peak.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pygdnsd.plugins.geoip.config import MapSpec
from pygdnsd.plugins.geoip.tables import MapDataError, MapTable, load_table

log = logging.getLogger("gdnsd")

POLL = 0.25

Stamp = tuple[int, int, int, int] | None  # (device, inode, size, mtime_ns); None: missing


def stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class LiveMap:
    """``current`` is swapped whole (one reference assignment): readers need no lock."""

    spec: MapSpec
    current: MapTable
    stamps: tuple[Stamp, ...]
    generation: int = 0

    @classmethod
    def load(cls, spec: MapSpec) -> LiveMap:
        stamps = tuple(stamp(p) for p in spec.files)
        return cls(spec, load_table(spec), stamps)

    def check(self, previous: tuple[Stamp, ...] | None) -> tuple[Stamp, ...]:
        """One poll: reload when the files changed and held still since ``previous``."""
        now = tuple(stamp(p) for p in self.spec.files)
        if now == self.stamps or now != previous:
            return now
        missing = [str(p) for p, s in zip(self.spec.files, now, strict=True) if s is None]
        if missing:
            if any(old is not None for old in self.stamps):
                log.error(
                    "%s: file(s) %s disappeared! Internal DB remains unchanged, "
                    "waiting for it to re-appear...",
                    self.spec.label(),
                    ", ".join(repr(m) for m in missing),
                )
            self.stamps = now
            return now
        self.stamps = now
        try:
            table = load_table(self.spec)
        except MapDataError as exc:
            log.error("%s (the map keeps its previous data)", exc)
            return now
        except Exception as exc:  # a reader bug must not stop the watch
            log.error("%s: reloading failed: %s (the map keeps its previous data)", self.spec.label(), exc)
            return now
        self.current = table
        self.generation += 1
        return now


def _forked(watcher: weakref.ref[Watcher]) -> None:
    found = watcher()
    if found is not None and found.running:
        # The parent watched: this child is one of its worker processes, which
        # the parent replaces after a reload. It never watches (not even from
        # its first answer): its own build would be a copy of the parent's.
        found.running = False
        found.parent_watches = True


class Watcher:
    """The polling thread of this process for ``maps``.

    The daemon starts it before it forks its worker processes
    (``Resolvers.start_watching``); a worker does not (see the module's
    docstring); the first answer starts it where nothing did (an engine
    embedded without the daemon).
    """

    def __init__(self, maps: Sequence[LiveMap]) -> None:
        self.maps = tuple(m for m in maps if m.spec.files)
        self.running = False
        # In a worker process forked from a watching one: never watches (``_forked``).
        self.parent_watches = False
        # Called after a map's new table is in place (``Resolvers.data_reloaded``: the daemon then forks new workers).
        self.on_reload: Callable[[], None] | None = None
        self._stop = threading.Event()
        # A forked child has no thread: it starts its own (``_forked``).
        # (Weakly: a watcher dropped with its config must not live on in the hook.)
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(me))

    def ensure_running(self) -> None:
        """Start the thread unless this process runs it already, or is a worker of one that does."""
        if self.running or self.parent_watches or not self.maps:
            return
        self.running = True
        self._stop = threading.Event()
        thread = threading.Thread(target=self._run, name="geoip-watch", daemon=True)
        thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        previous: list[tuple[Stamp, ...] | None] = [None] * len(self.maps)
        stop = self._stop
        while not stop.wait(POLL):
            for i, live in enumerate(self.maps):
                generation = live.generation
                previous[i] = live.check(previous[i])
                if live.generation != generation and self.on_reload is not None:
                    self.on_reload()
