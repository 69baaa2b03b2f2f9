"""Shared test fixtures: free loopback ports and DNS servers run as child processes.

``ServerProcess`` runs either the reference daemon (Debian's gdnsd 3.8.1) or
ours on a copy of a test config dir. Config files may hold placeholders that
are filled in on the copy:

* ``@PORT@``: a free loopback port (the same number is free for UDP and TCP)
* ``@CONFIG_DIR@``: the copied config dir
* ``@RUN_DIR@``, ``@STATE_DIR@``: fresh dirs under the test's tmp dir

Servers bind only loopback; every process is killed by PID on teardown.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REAL_GDNSD = Path("/usr/sbin/gdnsd")
REAL_GDNSDCTL = Path("/usr/bin/gdnsdctl")
READY_LINE = "DNS listeners started"
PLACEHOLDER_FILES = ("config",)
# The ``site`` (daemon, replace, systemd tests) and ``lineup`` (gdnsd <-> pygdnsd) fixtures, for every module.
pytest_plugins = ["daemon_support", "migrate_support"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` right now (bounded retries)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


def pygdnsd_python() -> str:
    """The interpreter that runs our package: the repo venv's, else the current one."""
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def server_command(kind: str, config_dir: Path) -> list[str]:
    """argv starting the ``kind`` ("gdnsd" or "pygdnsd") daemon in the foreground."""
    if kind == "gdnsd":
        return [str(REAL_GDNSD), "-c", str(config_dir), "start"]
    if kind == "pygdnsd":
        return [pygdnsd_python(), "-m", "pygdnsd", "-c", str(config_dir), "start"]
    raise ValueError(f"unknown server kind {kind!r}")


ONE_ZONE_CONFIG = """options => {
  listen => [ 127.0.0.1 ]
  dns_port => @PORT@
  run_dir => @RUN_DIR@
  state_dir => @STATE_DIR@
}
"""


def one_zone_source(source: Path, zone: str) -> Path:
    """A config dir to start servers from (``ServerProcess``): loopback on a port
    filled in at start, run and state dirs of their own, ``zone`` as example.com."""
    (source / "zones").mkdir(parents=True)
    (source / "config").write_text(ONE_ZONE_CONFIG)
    (source / "zones" / "example.com").write_text(zone)
    return source


def prepare_config_dir(source: Path, dest: Path, port: int) -> Path:
    """Copy ``source`` to ``dest/config`` and fill in the placeholders."""
    config_dir = dest / "config"
    run_dir = dest / "run"
    state_dir = dest / "state"
    shutil.copytree(source, config_dir)
    run_dir.mkdir()
    state_dir.mkdir()
    values = {
        "@PORT@": str(port),
        "@CONFIG_DIR@": str(config_dir),
        "@RUN_DIR@": str(run_dir),
        "@STATE_DIR@": str(state_dir),
    }
    for name in PLACEHOLDER_FILES:
        path = config_dir / name
        if path.exists():
            text = path.read_text()
            for key, value in values.items():
                text = text.replace(key, value)
            path.write_text(text)
    return config_dir


class ForegroundDaemon:
    """A daemon command run in the foreground until it logs ``READY_LINE``.

    Its stderr lines are kept with their arrival times (``lines``, ``text``);
    ``stop`` ends it by PID: SIGTERM, then SIGKILL after 10 s.
    """

    def __init__(self, command: list[str], env: dict[str, str], label: str, startup_timeout: float) -> None:
        self.command = command
        self.env = env
        self.label = label
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[tuple[float, str]] = []
        self.started_at = 0.0
        self.ready_at = 0.0
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def text(self) -> str:
        return "".join(line for _, line in self.lines)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = self.started_at + self.startup_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                # Give the reader a moment to collect the dying daemon's last words.
                self._reader.join(timeout=1.0)
                status = self.proc.poll()
                self.stop()
                reason = f"exited with {status}" if status is not None else "timed out"
                raise RuntimeError(f"{self.label} {reason} before {READY_LINE!r}; stderr:\n{self.text}")

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.lines.append((time.monotonic(), line))
            if READY_LINE in line and not self._ready.is_set():
                self.ready_at = time.monotonic()
                self._ready.set()

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if proc.stderr is not None:
            proc.stderr.close()
        self.proc = None


@dataclass
class ServerProcess:
    """One DNS daemon on a private copy of a config dir.

    Use as a context manager, or call ``start``/``stop``. ``stderr_text``
    holds everything the daemon logged so far.
    """

    kind: str
    source_dir: Path
    work_dir: Path
    port: int = 0
    startup_timeout: float = 20.0
    extra_env: dict[str, str] = field(default_factory=dict)
    config_dir: Path | None = None
    daemon: ForegroundDaemon | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.daemon.proc if self.daemon is not None else None

    @property
    def stderr_text(self) -> str:
        return self.daemon.text if self.daemon is not None else ""

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> ServerProcess:
        if not self.port:
            self.port = free_port()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir = prepare_config_dir(self.source_dir, self.work_dir, self.port)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "service") + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.extra_env)
        command = server_command(self.kind, self.config_dir)
        self.daemon = ForegroundDaemon(command, env, f"{self.kind} on {self.source_dir}", self.startup_timeout)
        self.daemon.start()
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose SYNs are dropped: a listener never accepting, its backlog full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    # The first connection, once accepted by the kernel, fills the backlog of 0:
    # from then on SYNs are dropped. A connecting socket turns writable when done.
    _, done, _ = select.select([], fillers[:1], [], 5.0)
    assert done, "the first connection to the black hole did not complete"
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[str, Path], ServerProcess]]:
    """Call ``server_factory(kind, config_source_dir)`` to get a started ServerProcess.

    Every server started through it is stopped at teardown.
    """
    started: list[ServerProcess] = []

    def make(kind: str, source_dir: Path) -> ServerProcess:
        server = ServerProcess(kind, Path(source_dir), tmp_path / f"{kind}-{len(started)}")
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


def gdnsd_available() -> bool:
    return REAL_GDNSD.exists()
