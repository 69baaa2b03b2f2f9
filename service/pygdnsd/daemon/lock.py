"""The single-instance lock: ``flock`` on ``run_dir/control.lock``.

A flock lives on the open file description, not on the process, so the
descriptor can be passed to a replacing daemon (SCM_RIGHTS) and the lock goes
with it: there is never a moment when no instance holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pygdnsd.errors import GdnsdError

LOCK_NAME = "control.lock"
SOCKET_NAME = "control.sock"
RUN_DIR_MODE = 0o700


class AlreadyRunning(GdnsdError):
    """Another instance holds the lock."""


def ensure_run_dir(run_dir: Path, owner: tuple[int, int] | None = None) -> None:
    """Create ``run_dir`` if missing and make it 0700 (as gdnsd does, even if it existed);
    hand it to ``owner`` (uid, gid) if given."""
    try:
        run_dir.mkdir(mode=RUN_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(run_dir, RUN_DIR_MODE)
        if owner is not None:
            os.chown(run_dir, *owner)
    except OSError as exc:
        raise GdnsdError(f"run_dir '{run_dir}': cannot create or chown: {exc.strerror}") from exc


class InstanceLock:
    """An exclusive flock held on an open descriptor until ``release`` (or exit)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def acquire(cls, run_dir: Path) -> InstanceLock:
        """Take the lock without waiting; AlreadyRunning if another instance has it."""
        path = run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise GdnsdError(f"lock file '{path}': cannot open: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # gdnsd 3.8.1's words, with the lock's path for the operator.
            raise AlreadyRunning(
                f"Another instance is running and has the control socket locked, failing ('{path}')"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise GdnsdError(f"lock file '{path}': cannot lock: {exc.strerror}") from exc
        return cls(fd, path)

    @classmethod
    def adopt(cls, fd: int, path: Path) -> InstanceLock:
        """A lock handed over by a previous instance (the descriptor already holds it)."""
        return cls(fd, path)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

