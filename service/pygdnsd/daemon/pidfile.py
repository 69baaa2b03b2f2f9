"""The pidfile: ``run_dir/gdnsd.pid`` unless the ``pidfile`` option says otherwise.

Written atomically (a temp file, locked, then renamed over the old name), so a
reader sees either the old pid or the new one, and the running instance holds a
flock on the file's inode for as long as it lives. A pidfile whose inode nobody
holds locked is stale: it never blocks a start. A replacing instance writes its
own inode the same way and so holds its own lock before the old one exits.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from pygdnsd.errors import GdnsdError

PIDFILE_MODE = 0o644


class PidfileState(enum.Enum):
    RUNNING = "running"  # locked by a live instance
    STALE = "stale"  # present, nobody holds it
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class PidfileStatus:
    state: PidfileState
    pid: int | None = None


class Pidfile:
    """A pidfile this process wrote and holds locked."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def write(cls, path: Path, pid: int, owner: tuple[int, int] | None = None) -> Pidfile:
        """Write ``pid`` to ``path`` atomically and keep it locked; ``owner`` (uid, gid) gets the file."""
        temp = path.with_name(f".{path.name}.{pid}.tmp")
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PIDFILE_MODE)
        except OSError as exc:
            raise GdnsdError(f"pidfile '{path}': cannot create '{temp}': {exc.strerror}") from exc
        try:
            # Locked before it gets its name, so no reader ever sees it unlocked.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{pid}\n".encode())
            os.fchmod(fd, PIDFILE_MODE)
            if owner is not None:
                os.fchown(fd, *owner)
            os.fsync(fd)
            os.rename(temp, path)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise GdnsdError(f"pidfile '{path}': cannot write: {exc.strerror}") from exc
        return cls(path, fd)

    def is_current(self) -> bool:
        """Whether ``path`` still names the inode we wrote (a replacement may have renamed its own over it)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(self.fd).st_ino
        except OSError:
            return False

    def remove(self) -> None:
        """Unlink the pidfile if it is still ours, then drop the lock."""
        if self.fd < 0:
            return
        if self.is_current():
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.release()

    def release(self) -> None:
        """Close (and so unlock) without unlinking: a handed-over pidfile stays."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def parse_pid(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


def probe(path: Path) -> PidfileStatus:
    """What the pidfile at ``path`` says, judged by its lock (not by the pid, which may be reused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return PidfileStatus(PidfileState.ABSENT)
    except OSError as exc:
        raise GdnsdError(f"pidfile '{path}': cannot open: {exc.strerror}") from exc
    try:
        pid = parse_pid(os.read(fd, 64).decode("ascii", "replace"))
        try:
            # Safe to test with a lock: only the writer ever locks this inode.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return PidfileStatus(PidfileState.RUNNING, pid)
        return PidfileStatus(PidfileState.STALE, pid)
    finally:
        os.close(fd)
