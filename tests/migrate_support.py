"""Running Debian's gdnsd 3.8.1 and pygdnsd on one config dir, taking over from each other.

A ``Lineup`` starts daemons of either kind in the foreground (``start``, or
``-R start`` for a takeover) as children of the test, so each is reaped the
moment it exits: a gdnsd old daemon waits for a new daemon it killed to be
*gone*, and an unreaped child never is. Everything started is killed by PID
at teardown, with any daemon found by its command line naming the config dir.
Loopback only, free ports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dnslib import DNSRecord

from conftest import REAL_GDNSD, free_port, pygdnsd_python
from daemon_support import Site, env, kill_all, wait_for, zone_text
from pygdnsd.control.client import ControlClient, ControlError
from pygdnsd.replace import fd_passing

KINDS = ("gdnsd", "pygdnsd")
# A hand-off on loopback takes milliseconds (gdnsd) to a couple of seconds (pygdnsd
# loading on a shared CPU); this bounds a wedged one.
TAKEOVER_TIMEOUT = 60.0


@dataclass
class Daemon:
    kind: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Lineup(Site):
    """A ``Site`` listening on 127.0.0.1 and ::1, two sockets of each kind per address, with a
    tcp_control listener, and the daemons of both kinds started on it."""

    control_port: int = field(default_factory=free_port)
    started: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.cfgdir / "zones").mkdir(parents=True, exist_ok=True)
        (self.cfgdir / "config").write_text(
            "options => {\n"
            "  listen => [ 127.0.0.1, ::1 ]\n"
            f"  dns_port => {self.port}\n"
            f"  run_dir => {self.run_dir}\n"
            f"  state_dir => {self.root / 'state'}\n"
            "  udp_threads => 2\n"
            "  tcp_threads => 2\n"
            # gdnsd's maximum on both: see test_replace.TUNING.
            "  udp_rcvbuf => 1048576\n"
            f"  tcp_control => [ 127.0.0.1:{self.control_port} ]\n"
            "}\n"
        )
        self.zone_file.write_text(zone_text())

    @property
    def control_path(self) -> str:
        return str(self.run_dir / "control.sock")

    def command(self, kind: str, *args: str) -> list[str]:
        program = [str(REAL_GDNSD)] if kind == "gdnsd" else [pygdnsd_python(), "-m", "pygdnsd"]
        return [*program, "-c", str(self.cfgdir), *args]

    def spawn(self, kind: str, *args: str, extra_env: Mapping[str, str] | None = None) -> Daemon:
        log = self.root / f"{kind}-{len(self.started)}.log"
        environment = env()
        environment.update(extra_env or {})
        with open(log, "wb") as out:
            process = subprocess.Popen(
                self.command(kind, *args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=environment, start_new_session=True,
            )
        daemon = Daemon(kind, process, log)
        self.started.append(daemon)
        return daemon

    def serving_pid(self, timeout: float = 2.0) -> int | None:
        """The PID the control socket reports (REQ_INFO), or None if nothing answers."""
        try:
            with ControlClient(self.control_path, timeout, oneshot=True) as client:
                return client.connect().pid
        except ControlError:
            return None

    def start(self, kind: str) -> Daemon:
        daemon = self.spawn(kind, "start")
        assert wait_for(lambda: daemon.exited() or self.serving_pid() == daemon.pid, 30.0), daemon.log_text()
        assert not daemon.exited(), daemon.log_text()
        return daemon

    def take_over(self, old: Daemon, kind: str, extra_env: Mapping[str, str] | None = None) -> tuple[Daemon, float]:
        """``kind -R start`` while ``old`` serves; once the old one has exited and the new one
        answers: the new daemon and the seconds from spawn to the old daemon's exit."""
        began = time.monotonic()
        new = self.spawn(kind, "-R", "start", extra_env=extra_env)
        try:
            old.process.wait(TAKEOVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the old {old.kind} never exited:\n{new.log_text()}\n{old.log_text()}") from None
        took = time.monotonic() - began
        assert old.process.returncode == 0, old.log_text()
        assert wait_for(lambda: new.exited() or self.serving_pid() == new.pid, 10.0), new.log_text()
        assert not new.exited(), new.log_text()
        return new, took

    def stats(self) -> dict[str, Any]:
        with ControlClient(self.control_path, 10) as client:
            client.connect()
            parsed: dict[str, Any] = json.loads(client.stats())
            return parsed

    def reload_zones(self) -> None:
        """Raises unless the daemon reloads now: one stuck in a takeover answers LATR until the timeout."""
        with ControlClient(self.control_path, 5) as client:
            client.connect()
            client.reload_zones()

    def gdnsdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/bin/gdnsdctl", "-c", str(self.cfgdir), *args],
            capture_output=True, text=True, timeout=120, check=False,
        )

    def close(self) -> None:
        for daemon in self.started:
            if not daemon.exited():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(daemon.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.process.wait(10)
        kill_all(self.cfgdir)


@pytest.fixture
def lineup(tmp_path: Path) -> Iterator[Lineup]:
    made = Lineup(tmp_path / "lineup", free_port())
    yield made
    made.close()


def answers(host: str, port: int, name: str = "www.example.com", qtype: str = "A", tcp: bool = False) -> list[str]:
    """The answer section's data for one query (dnslib), e.g. ``["192.0.2.10"]``."""
    question = DNSRecord.question(name, qtype)
    reply = DNSRecord.parse(question.send(host, port, tcp=tcp, timeout=3.0, ipv6=":" in host))
    return [str(rr.rdata) for rr in reply.rr]


def serves_everywhere(lineup: Lineup) -> None:
    """Answers over UDP and TCP on both listen addresses."""
    for host in ("127.0.0.1", "::1"):
        for tcp in (False, True):
            assert answers(host, lineup.port, tcp=tcp) == ["192.0.2.10"], (host, tcp)


def dns_socket_inodes(port: int) -> set[int]:
    """The kernel sockets bound to ``port`` (UDP, and TCP listening), by inode, from /proc/net."""
    found: set[int] = set()
    for table, listening_only in (("udp", False), ("udp6", False), ("tcp", True), ("tcp6", True)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and (not listening_only or fields[3] == "0A"):
                found.add(int(fields[9]))
    return found


def process_socket_inodes(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(entry)
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    return found


@dataclass
class GdnsdStandIn:
    """An old daemon that answers the takeover as gdnsd 3.8.1 does (raw bytes), with scripted
    deviations: another version, data in the TAKE answer, extra descriptors.

    It holds ``run_dir``'s lock (so a new daemon must take over) and, with
    ``listen``, its control socket; it hands over ``dns`` as its DNS sockets.
    ``heard`` records every request, so a test can tell it was never asked to stop.
    """

    run_dir: Path
    dns: list[socket.socket]
    started: int = 1_700_000_000
    version: bytes = b"\x03\x08\x01"
    take_data: bytes = b""  # gdnsd sends none
    extra_fds: list[int] = field(default_factory=list)
    heard: list[bytes] = field(default_factory=list)
    lock: int = -1
    control: socket.socket | None = None

    @property
    def slots(self) -> list[int]:
        return [*range(1, 36), self.started]

    def open(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = os.open(self.run_dir / "control.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "control.sock").unlink()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(str(self.run_dir / "control.sock"))
        self.control.listen(4)

    def asked(self) -> list[bytes]:
        return [request[:1] for request in self.heard]

    def converse(self, conn: socket.socket) -> threading.Thread:
        """Answer one takeover connection on a thread, until STOP (then "exit": close) or the peer goes."""
        assert self.control is not None
        control = self.control

        def run() -> None:
            conn.settimeout(30.0)
            with contextlib.suppress(OSError):
                for _ in range(8):
                    request = conn.recv(8)
                    if len(request) < 8:
                        return
                    self.heard.append(request)
                    key = request[:1]
                    if key == b"I":
                        conn.sendall(b"A" + self.version + struct.pack("=I", os.getpid()))
                    elif key in (b"1", b"2"):
                        conn.sendall(b"A" + bytes(7))
                    elif key == b"T":
                        fds = [self.lock, control.fileno(), *(s.fileno() for s in self.dns), *self.extra_fds]
                        head = b"A\0\0" + bytes([len(fds)]) + struct.pack("=I", len(self.take_data))
                        fd_passing.send_with_fds(conn, head + self.take_data, fds)
                    elif key == b"X":
                        data = b"".join(struct.pack("=Q", v) for v in self.slots)
                        conn.sendall(b"A" + bytes(7) + b"s\0\0\0" + struct.pack("=I", len(data)) + data)
                        conn.close()  # gdnsd exits
                        return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def accept_one(self) -> threading.Thread:
        """Serve the next connection to the control socket (a new daemon's) on a thread."""
        assert self.control is not None
        control = self.control

        def run() -> None:
            control.settimeout(60.0)
            with contextlib.suppress(OSError):
                conn, _ = control.accept()
                with conn:
                    self.converse(conn).join(60.0)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.lock >= 0:
            os.close(self.lock)
            self.lock = -1
