"""A takeover between gdnsd 3.8.1 and pygdnsd that fails at any step leaves the old daemon serving (issue 15).

Both directions, every step: the new side killed (our test hook; strace's
fault injection for gdnsd), or meeting what it does not expect (a socket,
another version, an address it cannot bind). After each, the old daemon
answers on every address, reports its own PID, and takes state changes again
(a daemon stuck in a takeover would answer them RESP_LATR), and the command
that started the takeover exited non-zero, saying why where it can.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from conftest import REAL_GDNSD
from daemon_support import env, wait_for
from migrate_support import Daemon, GdnsdStandIn, Lineup, dns_socket_inodes, serves_everywhere
from pygdnsd.control.client import ControlError
from pygdnsd.replace import fd_passing
from pygdnsd.replace.new_daemon import CRASH_ENV


def takes_state_changes(lineup: Lineup) -> bool:
    try:
        lineup.reload_zones()
    except ControlError:
        return False
    return True


def serves_on(lineup: Lineup, old: Daemon) -> None:
    assert not old.exited(), old.log_text()
    assert lineup.serving_pid() == old.pid
    assert wait_for(lambda: takes_state_changes(lineup), 20.0), old.log_text()
    serves_everywhere(lineup)


# --- pygdnsd taking over from gdnsd ---------------------------------------------------


@pytest.mark.parametrize("step", ["after-load", "after-fds", "before-ready"])
def test_pygdnsd_killed_at_any_step_leaves_gdnsd_serving(lineup: Lineup, step: str) -> None:
    gdnsd = lineup.start("gdnsd")
    new = lineup.spawn("pygdnsd", "-R", "start", extra_env={CRASH_ENV: step})
    assert new.process.wait(60) == -signal.SIGKILL, new.log_text()
    serves_on(lineup, gdnsd)
    assert "Exiting cleanly at request of new daemon" not in gdnsd.log_text()


def add_listen_address(lineup: Lineup, address: str) -> None:
    config = lineup.cfgdir / "config"
    config.write_text(config.read_text().replace("listen => [ 127.0.0.1, ::1 ]", f"listen => [ 127.0.0.1, ::1, {address} ]"))


@contextlib.contextmanager
def taken_address_configured(lineup: Lineup) -> Iterator[int]:
    """A UDP port on 127.0.0.1 held by this test, added to the config's listen list: its port."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        add_listen_address(lineup, f"127.0.0.1:{port}")
        yield port
    finally:
        taken.close()


def test_an_address_pygdnsd_cannot_bind_aborts_before_stop(lineup: Lineup) -> None:
    gdnsd = lineup.start("gdnsd")
    with taken_address_configured(lineup) as port:
        new = lineup.spawn("pygdnsd", "-R", "start")
        # gdnsd SIGKILLs a new daemon that hangs up early: non-zero either way, the reason said first.
        assert new.process.wait(60) != 0
        log = new.log_text()
        assert f"bind() failed for UDP DNS socket 127.0.0.1:{port}" in log, log
        assert "replace failed" in log
        serves_on(lineup, gdnsd)
        assert "Exiting cleanly at request of new daemon" not in gdnsd.log_text()


def test_our_gdnsd_replace_says_why_and_that_gdnsd_serves_on(lineup: Lineup) -> None:
    gdnsd = lineup.start("gdnsd")
    with taken_address_configured(lineup) as port:
        helper = subprocess.run(
            lineup.command("pygdnsd", "replace"), capture_output=True, text=True, env=env(), timeout=120,
            check=False, stdin=subprocess.DEVNULL,
        )
        assert helper.returncode == 1
        assert f"bind() failed for UDP DNS socket 127.0.0.1:{port}" in helper.stderr, helper.stderr
        assert f"the old daemon (PID {gdnsd.pid}) serves on" in helper.stderr, helper.stderr
        serves_on(lineup, gdnsd)


def listening_udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.mark.parametrize(
    ("deviation", "said", "asked"),
    [
        ("stray socket", "descriptor #4 handed over is an AF_UNIX/SOCK_DGRAM socket", [b"I", b"1", b"2", b"T"]),
        ("version 4", "reports version 4.0.0, whose takeover this daemon does not speak", [b"I"]),
        ("data in TAKE", "which gdnsd 3.8.1 never sends", [b"I", b"1", b"2", b"T"]),
    ],
)
def test_pygdnsd_refuses_what_gdnsd_never_sends_and_never_asks_it_to_stop(
    lineup: Lineup, deviation: str, said: str, asked: list[bytes]
) -> None:
    dns = listening_udp(lineup.port)
    stray = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old = GdnsdStandIn(lineup.run_dir, [dns])
    if deviation == "stray socket":
        old.extra_fds.append(stray.fileno())
    elif deviation == "version 4":
        old.version = b"\x04\x00\x00"
    else:
        old.take_data = b"{}"
    old.open()
    try:
        conversation = old.accept_one()
        new = lineup.spawn("pygdnsd", "-R", "start")
        assert new.process.wait(60) == 1, new.log_text()
        assert said in new.log_text()
        conversation.join(10.0)
        assert old.asked() == asked  # never REQ_STOP: the old daemon was never told to go
        # Nothing of the new daemon's is left on the port: only the old daemon's socket.
        assert dns_socket_inodes(lineup.port) == {os.fstat(dns.fileno()).st_ino}
    finally:
        old.close()
        dns.close()
        stray.close()


# --- gdnsd taking over from pygdnsd ---------------------------------------------------


@pytest.mark.parametrize(
    ("step", "syscall", "call"),
    [
        ("between TAK1 and TAK2 (its zone load)", "sendto", 3),
        ("with REQ_TAKE sent, before the descriptors are read", "recvmsg", 1),
        ("serving, just before REQ_STOP", "sendto", 5),
    ],
)
def test_gdnsd_killed_at_any_step_leaves_pygdnsd_serving(lineup: Lineup, step: str, syscall: str, call: int) -> None:
    ours = lineup.start("pygdnsd")
    # strace kills gdnsd as it enters the call-th such syscall: its requests are
    # sendto()s (INFO, TAK1, TAK2, TAKE, STOP), the descriptors come with a recvmsg().
    killed = subprocess.run(
        ["strace", "-f", "-o", "/dev/null", "-e", f"trace={syscall}",
         "-e", f"inject={syscall}:signal=KILL:when={call}",
         str(REAL_GDNSD), "-c", str(lineup.cfgdir), "-R", "start"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert killed.returncode != 0, step
    assert "Connected to old daemon version 3.8.1" in killed.stderr, killed.stderr
    serves_on(lineup, ours)
    assert "takeover by PID" in ours.log_text() and "; carrying on" in ours.log_text()
    assert (lineup.run_dir / "gdnsd.pid").read_text().strip() == str(ours.pid)


# What gdnsd 3.8.1's new daemon sends (strace of its "-R start"), its PID in d.
def gdnsd_request(key: bytes, pid: int = 0x4F85) -> bytes:
    return key + b"\x03\x08\x01\x00\x00\x00\x00" if key == b"I" else key + bytes(3) + pid.to_bytes(4, "little")


@pytest.mark.parametrize("last", [b"I", b"1", b"2", b"T"])
def test_a_gdnsd_new_daemon_gone_after_any_step_leaves_pygdnsd_serving(lineup: Lineup, last: bytes) -> None:
    ours = lineup.start("pygdnsd")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10.0)
        conn.connect(lineup.control_path)
        for key in (b"I", b"1", b"2", b"T")[: [b"I", b"1", b"2", b"T"].index(last) + 1]:
            conn.sendall(gdnsd_request(key))
            head, fds = fd_passing.recv_with_fds(conn, 8, 64, 10.0)
            fd_passing.close_fds(fds)  # the descriptors of a TAKE die with the "new daemon"
            assert head[:1] == b"A", (key, head)
            size = int.from_bytes(head[4:], "little") if key == b"2" else 0
            if size:
                fd_passing.recv_with_fds(conn, size, 0, 10.0)
    serves_on(lineup, ours)
    if last != b"I":
        assert "failed: the new daemon went away; carrying on" in ours.log_text()


def test_pygdnsd_serves_on_when_the_new_gdnsd_cannot_start(lineup: Lineup) -> None:
    ours = lineup.start("pygdnsd")
    # A zone gdnsd refuses: its new daemon fails during its load, after TAK1.
    good = lineup.zone_file.read_text()
    lineup.zone_file.write_text(good + "www2 A not-an-address\n")
    failed = subprocess.run(
        [str(REAL_GDNSD), "-c", str(lineup.cfgdir), "-R", "start"], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert failed.returncode != 0
    assert "Connected to old daemon version 3.8.1" in failed.stderr, failed.stderr
    lineup.zone_file.write_text(good)  # so that the reload serves_on asks for can succeed
    serves_on(lineup, ours)
