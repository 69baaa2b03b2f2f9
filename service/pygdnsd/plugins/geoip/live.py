"""A map as served: its current table, replaced when one of its files changes.

gdnsd watches a map's database and nets file and rebuilds the map when one
is replaced, keeping the old one (and logging the file) when the new data
is bad or the file disappeared. Here each process that answers (the
instance and every forked worker: threads do not survive a fork) runs one
thread polling the files' stamps every ``POLL`` seconds; a change is loaded
once the stamps held still for one more poll, so a file still being written
is not read half-way, and new answers follow within about 2 * POLL plus the
build (GeoLite2 Country: 0.7 s) of the replacement.
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
        # The parent watched: this child is one of its worker processes, and
        # must see a file replaced from now on, not from its first query. (Its
        # first poll comes after the worker has closed what it inherited.)
        found.running = False
        found.ensure_running()


class Watcher:
    """The polling thread of this process for ``maps``.

    The daemon starts it before it forks its worker processes
    (``Resolvers.start_watching``), and each worker starts its own at the
    fork; the first answer starts it where nothing did (an engine embedded
    without the daemon).
    """

    def __init__(self, maps: Sequence[LiveMap]) -> None:
        self.maps = tuple(m for m in maps if m.spec.files)
        self.running = False
        # Called after a map's new table is in place (``Resolvers.note_change``).
        self.on_reload: Callable[[], None] | None = None
        self._stop = threading.Event()
        # A forked child has no thread: it starts its own (``_forked``).
        # (Weakly: a watcher dropped with its config must not live on in the hook.)
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(me))

    def ensure_running(self) -> None:
        """Start the thread unless this process runs it already."""
        if self.running or not self.maps:
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
