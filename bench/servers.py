"""Running the two servers under test: start, wait for serving, sample CPU/RSS, stop.

Both are started the same way (``<server> -c CFGDIR start`` in the
foreground, logging to stderr) and are ready when they log ``DNS listeners
started``. Every process is killed by its PID and reaped before returning.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY_LINE = "DNS listeners started"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Server:
    """One implementation: a label, how to run it and what to add to its environment."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def command(self, cfgdir: Path, action: str) -> list[str]:
        return [*self.argv, "-c", str(cfgdir), action]

    def environ(self) -> dict[str, str]:
        return {**os.environ, **dict(self.env)}


def pygdnsd_of(checkout: Path, name: str, pure: bool = False) -> Server:
    """pygdnsd as a checkout's own venv runs it (``dev/bootstrap`` made it an editable install).

    ``pure``: with ``PYGDNSD_PURE=1``, so the pure-Python path answers UDP, not the compiled one.
    """
    return Server(
        name, (str(checkout / ".venv/bin/python"), "-m", "pygdnsd"), (("PYGDNSD_PURE", "1" if pure else "0"),)
    )


GDNSD = Server("gdnsd", ("/usr/sbin/gdnsd",))
PYGDNSD = pygdnsd_of(REPO, "pygdnsd")
PYGDNSD_PURE = pygdnsd_of(REPO, "pure", pure=True)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _own_cpu_seconds(pid: int) -> tuple[float, float]:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except FileNotFoundError:
        return 0.0, 0.0
    # Field 2 (comm) may hold spaces; the fields after it start past the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (pygdnsd's worker processes), from every thread's list."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in children.read_text().split()]
        except OSError:
            continue
    return found


def cpu_by_process(pid: int) -> dict[int, float]:
    """utime+stime of the server process and of each of its live child processes."""
    return {p: sum(_own_cpu_seconds(p)) for p in [pid, *child_pids(pid)]}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of the server: the process (all threads) and its live child processes.

    pygdnsd serves udp_threads/tcp_threads above 1 with worker processes;
    their CPU is the server's too (they live for the whole measured run).
    """
    user, kernel = _own_cpu_seconds(pid)
    for child in child_pids(pid):
        child_user, child_kernel = _own_cpu_seconds(child)
        user, kernel = user + child_user, kernel + child_kernel
    return user, kernel


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


@dataclass(frozen=True, slots=True)
class Checkconf:
    ok: bool
    seconds: float
    peak_rss_mb: float
    output: str


def checkconf(server: Server, cfgdir: Path, timeout: float) -> Checkconf:
    """Run ``checkconf``: wall time and peak RSS (from wait4's rusage)."""
    began = time.monotonic()
    proc = subprocess.Popen(
        server.command(cfgdir, "checkconf"),
        env=server.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""))
    reader.start()
    deadline = began + timeout
    status, usage = 0, None
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        time.sleep(0.01)
    else:
        os.kill(proc.pid, signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    timed_out = seconds >= timeout
    rss = usage.ru_maxrss / 1024 if usage is not None else 0.0
    text = "".join(out) + (f"\n(killed after {timeout:.0f} s)" if timed_out else "")
    return Checkconf(proc.returncode == 0 and not timed_out, seconds, rss, text)


class Running:
    """A started server; use as a context manager so it is always killed."""

    def __init__(self, server: Server, cfgdir: Path, timeout: float) -> None:
        self.server = server
        self.log: list[str] = []
        self._ready = threading.Event()
        began = time.monotonic()
        self.proc = subprocess.Popen(
            server.command(cfgdir, "start"),
            env=server.environ(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            if not self._ready.wait(timeout):
                raise RuntimeError(
                    f"{server.name} not serving after {timeout:.0f} s:\n" + "".join(self.log[-20:])
                )
            if self.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n" + "".join(self.log[-20:]))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.log) < 10_000:
                self.log.append(line)
            if READY_LINE in line:
                self._ready.set()
        self._ready.set()  # exited: wake the waiter, which checks poll()

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds(self.pid)

    def cpu_by_process(self) -> dict[int, float]:
        return cpu_by_process(self.pid)

    def rss(self) -> float:
        return peak_rss_mb(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(STOP_SECONDS)
        self._reader.join(STOP_SECONDS)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def check_tools(extra: Sequence[str] = ()) -> None:
    missing = [p for p in (GDNSD.argv[0], PYGDNSD.argv[0], *extra) if not os.access(p, os.X_OK)]
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)} (run dev/bootstrap; apt-get install dnsperf)")

