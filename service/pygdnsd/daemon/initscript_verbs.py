"""The initscript verbs that talk to a running daemon: status, stop, reload-zones.

Each returns the process exit status and prints one line an operator reads
(stdout for status, stderr for the rest, as initscripts do). ``status``
follows LSB: 0 running, 1 dead but the pidfile remains, 3 not running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pygdnsd.config.options import load_config
from pygdnsd.control.client import ControlClient, ControlError, DaemonNotRunning, RequestFailed
from pygdnsd.daemon.lock import SOCKET_NAME
from pygdnsd.daemon.pidfile import PidfileState, probe

LSB_RUNNING = 0
LSB_DEAD_WITH_PIDFILE = 1
LSB_NOT_RUNNING = 3
EXIT_OK = 0
EXIT_FAILURE = 1
DEFAULT_TIMEOUT = 47.0  # gdnsdctl's default
STATUS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Where:
    """Where a daemon of this config dir can be found."""

    control_socket: Path
    pidfile: Path

    @classmethod
    def of(cls, cfgdir: Path) -> Where:
        config = load_config(cfgdir)
        return cls(config.run_dir / SOCKET_NAME, config.pidfile)


@dataclass(frozen=True, slots=True)
class Running:
    """How a running daemon answered (``pid`` None if only its pidfile lock says it runs)."""

    pid: int | None
    via_control: bool


def find_running(where: Where, timeout: float = STATUS_TIMEOUT) -> Running | None:
    """The daemon if one runs: asked over the control socket, else judged by the pidfile lock."""
    try:
        with ControlClient(str(where.control_socket), int(timeout), oneshot=True) as client:
            return Running(client.connect().pid, True)
    except ControlError:
        pass
    found = probe(where.pidfile)
    if found.state is PidfileState.RUNNING:
        return Running(found.pid, False)
    return None


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie awaiting its reaper counts as gone).

    Every thread counts: a killed multi-threaded process shows its main
    thread as a zombie while its other threads are still exiting, and those
    still hold its descriptors (sockets, the instance lock). Seen in
    test_sigkill_of_the_instance_leaves_no_worker: the worker's main thread
    was ``Z`` and its port still bound.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        # With procfs, the process was reaped as we looked; without (FreeBSD),
        # kill() is all we have, and it cannot tell a zombie from a running process.
        return Path("/proc/self/task").is_dir()
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that ends as we look is gone
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return False
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return process_gone(pid)


def status(cfgdir: Path, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    where = Where.of(cfgdir)
    running = find_running(where)
    if running is not None:
        pid = running.pid if running.pid is not None else "unknown"
        note = "" if running.via_control else " (control socket not answering)"
        print(f"gdnsd is running at PID {pid}{note}", file=out)
        return LSB_RUNNING
    found = probe(where.pidfile)
    if found.state is PidfileState.STALE:
        print(f"gdnsd is not running, but its pidfile '{where.pidfile}' remains (PID {found.pid})", file=out)
        return LSB_DEAD_WITH_PIDFILE
    print("gdnsd is not running", file=out)
    return LSB_NOT_RUNNING


def stop(cfgdir: Path, timeout: float = DEFAULT_TIMEOUT, err: TextIO | None = None) -> int:
    """Stop the daemon and return only once it has exited. Not running counts as stopped."""
    err = err if err is not None else sys.stderr
    where = Where.of(cfgdir)
    try:
        with ControlClient(str(where.control_socket), int(timeout)) as client:
            pid = client.connect().pid
            client.stop()
    except DaemonNotRunning:
        return _stop_by_signal(where, timeout, err)
    except ControlError as exc:
        print(f"error: stopping gdnsd failed: {exc}", file=err)
        return EXIT_FAILURE
    return _gone(pid, timeout, err, "acknowledged the stop but has not exited", "stopped")


def _stop_by_signal(where: Where, timeout: float, err: TextIO) -> int:
    """No control socket: a daemon holding its pidfile lock still gets SIGTERM."""
    found = probe(where.pidfile)
    if found.state is not PidfileState.RUNNING or found.pid is None:
        print("info: gdnsd is not running", file=err)
        return EXIT_OK
    with contextlib.suppress(ProcessLookupError):
        os.kill(found.pid, signal.SIGTERM)
    return _gone(found.pid, timeout, err, "did not exit after SIGTERM", "stopped by SIGTERM")


def _gone(pid: int, timeout: float, err: TextIO, stuck: str, stopped: str) -> int:
    """Wait for the stopped daemon to exit, then say ``stopped``, or ``stuck`` if it did not."""
    if not wait_gone(pid, timeout):
        print(f"error: gdnsd (PID {pid}) {stuck}", file=err)
        return EXIT_FAILURE
    print(f"info: gdnsd (PID {pid}) {stopped}", file=err)
    return EXIT_OK


def reload_zones(cfgdir: Path, timeout: float = DEFAULT_TIMEOUT, err: TextIO | None = None) -> int:
    err = err if err is not None else sys.stderr
    where = Where.of(cfgdir)
    try:
        with ControlClient(str(where.control_socket), int(timeout)) as client:
            client.connect()
            client.reload_zones()
    except RequestFailed as exc:
        # A daemon that predates failure reasons (gdnsd itself) only logs why.
        why = exc.reason or f"{exc} (the daemon logged why)"
        print(f"error: reloading zones failed: {why}", file=err)
        return EXIT_FAILURE
    except ControlError as exc:
        print(f"error: reloading zones failed: {exc}", file=err)
        return EXIT_FAILURE
    print("info: Zone data reloaded", file=err)
    return EXIT_OK


def is_running(cfgdir: Path) -> bool:
    return find_running(Where.of(cfgdir)) is not None
