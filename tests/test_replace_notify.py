"""What the daemons tell systemd through a replace, heard on a stand-in $NOTIFY_SOCKET.

The test binds the notification socket itself (SO_PASSCRED, so each message
comes with its sender's PID) and plays PID 1's part of the barrier: every
descriptor that arrives is closed at once. No systemd is needed: this checks
our side of the protocol (handoff-facts.md); tests/container/ checks systemd's.
"""

from __future__ import annotations

import array
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import pygdnsd_python
from daemon_support import Site, env, wait_for

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s


@dataclass
class Heard:
    pid: int
    message: str
    fds: int


@dataclass
class FakeSystemd:
    path: Path
    sock: socket.socket
    heard: list[Heard] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fake-systemd", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        creds_size = struct.calcsize("3i")
        space = socket.CMSG_SPACE(creds_size) + socket.CMSG_SPACE(16 * array.array("i").itemsize)
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, space)
            except TimeoutError:
                continue
            pid, fds = 0, []
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds_size])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % array.array("i").itemsize
                    fds.extend(array.array("i", payload[:usable]))
            for fd in fds:  # PID 1 closes a barrier's pipe once it got this far
                socket.close(fd)
            self.heard.append(Heard(pid, data.decode(), len(fds)))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def messages_from(self, pid: int) -> list[str]:
        return [heard.message for heard in list(self.heard) if heard.pid == pid]

    def said(self, pid: int, prefix: str) -> bool:
        return any(message.startswith(prefix) for message in self.messages_from(pid))


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    fake = FakeSystemd(path, sock)
    fake.start()
    yield fake
    fake.close()


def run_gdnsd(site: Site, systemd: FakeSystemd, *args: str, watchdog: bool = False) -> subprocess.CompletedProcess[str]:
    environment = env()
    environment["NOTIFY_SOCKET"] = str(systemd.path)
    for name in ("PYGDNSD_TEST_CRASH_AT", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID", "JOURNAL_STREAM"):
        environment.pop(name, None)
    if watchdog:  # as systemd gives it to ExecStart only
        environment["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), *args],
        capture_output=True, text=True, env=environment, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


def test_a_replace_claims_the_unit_and_the_old_daemon_never_says_stopping(
    site: Site, systemd: FakeSystemd
) -> None:
    assert run_gdnsd(site, systemd, "daemonize", watchdog=True).returncode == 0
    old = int(site.pidfile.read_text())
    assert wait_for(lambda: "READY=1" in systemd.messages_from(old), 5.0)
    assert wait_for(lambda: systemd.said(old, "STATUS=serving 1 zones"), 5.0)
    assert wait_for(lambda: systemd.messages_from(old).count("WATCHDOG=1") >= 2, 5.0)

    result = run_gdnsd(site, systemd, "replace")  # ExecReload: no WATCHDOG_USEC of its own
    assert result.returncode == 0, result.stderr
    new = int(site.pidfile.read_text())
    assert new != old
    from_new = systemd.messages_from(new)
    # MAINPID and READY in one message, then a barrier carrying one descriptor.
    claim = from_new.index(f"MAINPID={new}\nREADY=1")
    assert from_new[claim + 1] == "BARRIER=1"
    assert [h.fds for h in systemd.heard if h.pid == new and h.message == "BARRIER=1"] == [1]
    # The old daemon left without STOPPING=1: systemd would have stopped the unit.
    assert not any("STOPPING=1" in message for message in systemd.messages_from(old))
    # The watchdog interval came over with the sockets: two more pings from the new daemon.
    count = systemd.messages_from(new).count("WATCHDOG=1")
    assert wait_for(lambda: systemd.messages_from(new).count("WATCHDOG=1") >= count + 2, 5.0)
    assert wait_for(lambda: systemd.said(new, "STATUS=serving 1 zones, ") and any(
        "last replace" in m for m in systemd.messages_from(new)), 15.0)

    # reload-zones is bracketed by RELOADING=1 and READY=1.
    assert run_gdnsd(site, systemd, "reload-zones").returncode == 0
    after_reload = systemd.messages_from(new)
    reloading = [i for i, m in enumerate(after_reload) if m.startswith("RELOADING=1\nMONOTONIC_USEC=")]
    assert reloading and "READY=1" in after_reload[reloading[-1] + 1:]

    # A real stop does say STOPPING=1.
    assert run_gdnsd(site, systemd, "stop").returncode == 0
    assert "STOPPING=1" in systemd.messages_from(new)
