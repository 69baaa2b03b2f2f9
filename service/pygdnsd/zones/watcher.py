"""``zones_auto_reload``: notice changes in the zones directory and ask for a reload.

inotify (through libc with ctypes: no new dependency) tells us something
changed; we then wait until the directory has been quiet for ``settle``
seconds, so a file still being written is not loaded half-way. Where inotify
is unavailable, the directory's listing (names, sizes, mtimes) is polled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_SETTLE = 0.5
POLL_INTERVAL = 0.5
_TICK = 0.1

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF
)

Snapshot = frozenset[tuple[str, int, int, int]]


class InotifyUnavailable(OSError):
    pass


def open_inotify(directory: Path) -> int:
    """An inotify descriptor watching ``directory``; InotifyUnavailable if the system has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        init1 = libc.inotify_init1
        add_watch = libc.inotify_add_watch
    except (OSError, AttributeError) as exc:
        raise InotifyUnavailable(f"no inotify in libc: {exc}") from exc
    add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    fd = int(init1(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise InotifyUnavailable(code, f"inotify_init1: {os.strerror(code)}")
    if add_watch(fd, os.fsencode(directory), WATCH_MASK) < 0:
        code = ctypes.get_errno()
        os.close(fd)
        raise InotifyUnavailable(code, f"inotify_add_watch '{directory}': {os.strerror(code)}")
    return fd


def snapshot(directory: Path) -> Snapshot:
    """What polling compares: every entry's name, size, mtime and inode."""
    entries = set()
    try:
        with os.scandir(directory) as listing:
            for entry in listing:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries.add((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    except OSError:
        pass
    return frozenset(entries)


class ZonesWatcher:
    """Calls ``on_change`` (from its own thread) once changes to ``directory`` settle."""

    def __init__(
        self,
        directory: Path,
        on_change: Callable[[], None],
        settle: float = DEFAULT_SETTLE,
        use_inotify: bool = True,
    ) -> None:
        self.directory = directory
        self.on_change = on_change
        self.settle = settle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._listing: Snapshot = frozenset()  # the poll mode's last look at the directory (start)
        if use_inotify:
            try:
                self._fd = open_inotify(directory)
            except InotifyUnavailable as exc:
                log.warning("zones_auto_reload: %s; polling '%s' instead", exc.strerror or exc, directory)

    @property
    def mode(self) -> str:
        return "inotify" if self._fd >= 0 else "poll"

    def start(self) -> None:
        if self._fd < 0:
            # Taken before start returns, as inotify's watch is: a change made
            # once the daemon serves is never part of the first look.
            self._listing = snapshot(self.directory)
        target = self._run_inotify if self._fd >= 0 else self._run_poll
        self._thread = threading.Thread(target=target, name="zones-watcher", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _run_inotify(self) -> None:
        due: float | None = None  # when the directory will have been quiet long enough
        while not self._stop.is_set():
            wait = _TICK if due is None else max(0.0, min(_TICK, due - time.monotonic()))
            readable, _, _ = select.select([self._fd], [], [], wait)
            if readable and self._drain():
                due = time.monotonic() + self.settle
            if due is not None and time.monotonic() >= due:
                due = None
                self._fire()

    def _drain(self) -> bool:
        """Read every queued event; True if there were any."""
        seen = False
        for _ in range(1000):
            try:
                data = os.read(self._fd, 65536)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not data:
                break
            seen = True
        return seen

    def _run_poll(self) -> None:
        last = self._listing
        changed_at: float | None = None
        while not self._stop.wait(min(POLL_INTERVAL, self.settle)):
            now = snapshot(self.directory)
            if now != last:
                last = now
                changed_at = time.monotonic()
            elif changed_at is not None and time.monotonic() - changed_at >= self.settle:
                changed_at = None
                self._fire()

    def _fire(self) -> None:
        log.info("zones_auto_reload: change in '%s', reloading zones", self.directory)
        try:
            self.on_change()
        except Exception:
            log.exception("zones_auto_reload: reload request failed")
