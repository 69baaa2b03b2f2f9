"""systemd.notify against a fake systemd: a unix datagram socket we read ourselves."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pygdnsd.systemd import notify


@dataclass
class FakeSystemd:
    """Receives notifications; closes passed fds (as PID 1 does) unless told to hold them."""

    sock: socket.socket
    hold_fds: bool = False
    messages: list[str] = field(default_factory=list)
    fd_counts: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)

    def receive(self, count: int = 1, timeout: float = 5.0) -> list[str]:
        self.sock.settimeout(timeout)
        for _ in range(count):
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 4096, 16)
            self.messages.append(data.decode())
            self.fd_counts.append(len(fds))
            if self.hold_fds:
                self.held.extend(fds)
            else:
                for fd in fds:
                    os.close(fd)
        return self.messages[-count:]

    def close(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        name = f"pygdnsd-test-notify-{os.getpid()}-{id(sock)}"
        sock.bind(b"\0" + name.encode())
        address = "@" + name
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    fake = FakeSystemd(sock)
    yield fake
    fake.close()


def test_backend_is_systemd_python_here() -> None:
    # The dev venv has Debian's python3-systemd; the fallbacks are tested below.
    assert notify.BACKEND == "systemd-python"


def test_everything_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify.under_systemd()
    for call in (notify.ready, notify.reloading, notify.stopping, notify.watchdog, notify.barrier):
        assert call() is False
    assert notify.status("x") is False
    assert notify.ready_as_main(os.getpid()) is False
    assert notify.stdlib_send("READY=1") is False


def test_well_known_messages(fake_systemd: FakeSystemd) -> None:
    assert notify.under_systemd()
    assert notify.ready()
    assert notify.status("serving 3 zones\nlast replace ok")
    assert notify.watchdog()
    assert notify.reloading()
    assert fake_systemd.receive(4)[:3] == [
        "READY=1",
        "STATUS=serving 3 zones last replace ok",
        "WATCHDOG=1",
    ]
    reloading, monotonic = fake_systemd.messages[3].split("\n")
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=")
    usec = int(monotonic.split("=", 1)[1])
    assert 0 < usec <= notify.monotonic_usec()


def test_ready_as_main_sends_one_message_then_a_barrier(fake_systemd: FakeSystemd) -> None:
    receiver = threading.Thread(target=fake_systemd.receive, args=(2,))
    receiver.start()
    assert notify.ready_as_main(4242, timeout=5.0) is True
    receiver.join(timeout=5.0)
    assert fake_systemd.messages == ["MAINPID=4242\nREADY=1", "BARRIER=1"]
    assert fake_systemd.fd_counts == [0, 1]


def test_barrier_times_out_while_systemd_holds_the_fd(fake_systemd: FakeSystemd) -> None:
    fake_systemd.hold_fds = True
    receiver = threading.Thread(target=fake_systemd.receive)
    receiver.start()
    with pytest.raises(notify.NotifyError, match="barrier"):
        notify.barrier(timeout=0.3)
    receiver.join(timeout=5.0)
    assert fake_systemd.fd_counts == [1]


def test_barrier_fd_is_the_write_end_of_a_pipe(fake_systemd: FakeSystemd) -> None:
    fake_systemd.hold_fds = True
    receiver = threading.Thread(target=fake_systemd.receive)
    receiver.start()
    with pytest.raises(notify.NotifyError):
        notify.barrier(timeout=0.2)
    receiver.join(timeout=5.0)
    (fd,) = fake_systemd.held
    assert stat.S_ISFIFO(os.fstat(fd).st_mode)
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    with pytest.raises(BrokenPipeError):  # our read end is closed once we gave up
        os.write(fd, b"x")


def test_stdlib_sender_passes_fds(fake_systemd: FakeSystemd) -> None:
    read_end, write_end = os.pipe()
    try:
        assert notify.stdlib_send("FDSTORE=1\nFDNAME=x", [write_end, read_end])
    finally:
        os.close(read_end)
        os.close(write_end)
    assert fake_systemd.receive() == ["FDSTORE=1\nFDNAME=x"]
    assert fake_systemd.fd_counts == [2]


def test_stdlib_sender_reports_a_missing_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with pytest.raises(notify.NotifyError, match="gone"):
        notify.stdlib_send("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    with pytest.raises(notify.NotifyError, match="not a unix socket path"):
        notify.stdlib_send("READY=1")


def test_cysystemd_fallback_routes_fds_through_stdlib(
    fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    package = types.ModuleType("cysystemd")
    daemon = types.ModuleType("cysystemd.daemon")
    daemon.sd_notify = lines.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cysystemd", package)
    monkeypatch.setitem(sys.modules, "cysystemd.daemon", daemon)
    sender = notify._cysystemd_sender()
    assert sender is not None
    assert sender("READY=1", ())
    assert lines == ["READY=1"]
    read_end, write_end = os.pipe()
    try:
        assert sender("BARRIER=1", [write_end])
    finally:
        os.close(read_end)
        os.close(write_end)
    assert fake_systemd.receive() == ["BARRIER=1"]
    assert fake_systemd.fd_counts == [1]


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, 10, None),
        ({"WATCHDOG_USEC": "0"}, 10, None),
        ({"WATCHDOG_USEC": "junk"}, 10, None),
        ({"WATCHDOG_USEC": "20000000"}, 10, 10.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "10"}, 10, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "11"}, 10, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "x"}, 10, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert notify.watchdog_interval(env, pid) == expected
