"""The replace's pieces in-process: the control server's takeover routing, the helper pipe, the test hook."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pygdnsd.control import protocol
from pygdnsd.control.client import ControlClient, TryLater
from pygdnsd.control.protocol import RequestKey, ResponseKey
from pygdnsd.control.server import ControlServer, Outcome, bind_unix_listener
from pygdnsd.daemon import daemonize
from pygdnsd.daemon.daemonize import StartupReport, parse_verdict, read_verdict, reader_gone
from pygdnsd.engine.stats import Stats
from pygdnsd.replace import new_daemon
from pygdnsd.replace.fd_passing import Expected
from pygdnsd.replace.old_daemon import HandoffSet
from pygdnsd.replace.takeover import TakeoverClient, TakeoverRefused
from pygdnsd.systemd import watchdog


@dataclass
class FakeOld:
    """A ControlHandler and TakeoverHost that records the takeover's steps."""

    lock_path: Path
    events: list[str] = field(default_factory=list)
    server: ControlServer | None = None
    failed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    kept: list[socket.socket] = field(default_factory=list)
    lock_fds: list[int] = field(default_factory=list)

    def status(self) -> tuple[tuple[int, int, int], int]:
        return ((3, 8, 1), os.getpid())

    def stats_json(self) -> bytes:
        return b"{}"

    def states_json(self) -> bytes:
        return b"{}"

    def reload_zones(self) -> Outcome:
        self.events.append("reload")
        return Outcome.ACK

    def stop(self) -> Outcome:
        return Outcome.ACK

    def replace(self) -> Outcome:
        return Outcome.FAIL

    def acme_add(self, challenges: Sequence[protocol.AcmeChallenge]) -> Outcome:
        return Outcome.ACK

    def acme_flush(self) -> Outcome:
        return Outcome.ACK

    # TakeoverHost
    def expected_replacement(self) -> int | None:
        return None

    def challenges(self) -> Sequence[protocol.ChallengeBatch]:
        return []

    def started_wall(self) -> int:
        return 1_700_000_000

    def pause_control_accept(self) -> None:
        self.events.append("pause")
        assert self.server is not None
        self.server.pause_accepting()

    def handoff(self) -> HandoffSet:
        assert self.server is not None
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.lock_fds.append(lock_fd)
        return HandoffSet(lock_fd, self.server.listener.fileno(), [])

    def stop_serving(self) -> None:
        self.events.append("stop_serving")

    def final_stats(self) -> dict[str, dict[str, int]]:
        return {"udp": {"reqs": 7}}

    def takeover_failed(self, reason: str) -> None:
        self.events.append("failed")
        assert self.server is not None
        self.server.resume_accepting()
        self.failed.set()

    def handed_over(self, connection: socket.socket) -> None:
        self.events.append("handed_over")
        self.kept.append(connection)
        self.done.set()


@pytest.fixture
def old(tmp_path: Path) -> Iterator[FakeOld]:
    fake = FakeOld(tmp_path / "control.lock")
    listener = bind_unix_listener(str(tmp_path / "control.sock"))
    fake.server = ControlServer(listener, fake, takeover_host=fake)
    fake.server.start()
    yield fake
    fake.server.close()
    for sock in fake.kept:
        sock.close()
    for fd in fake.lock_fds:
        os.close(fd)


def socket_path(old: FakeOld) -> str:
    assert old.server is not None
    return str(old.server.listener.getsockname())


def test_state_changes_wait_while_a_takeover_runs_and_resume_when_it_fails(old: FakeOld) -> None:
    taker = TakeoverClient.connect(socket_path(old), pid=99999, step_timeout=5)
    taker.info()
    taker.announce()
    with ControlClient(socket_path(old), 5, oneshot=True) as other:
        other.connect()
        with pytest.raises(TryLater):
            other.reload_zones()
        # Read-only requests are answered all along.
        assert other.status().pid == os.getpid()
    # A second would-be successor is told to come back later too.
    rival = TakeoverClient.connect(socket_path(old), pid=88888, step_timeout=5)
    rival.info()
    with pytest.raises(TakeoverRefused) as refused:
        rival.announce()
    assert refused.value.response == ResponseKey.LATR
    rival.close()
    # The successor vanishes: the old daemon carries on and serves state changes again.
    taker.close()
    assert old.failed.wait(5)
    with ControlClient(socket_path(old), 5, oneshot=True) as other:
        other.connect()
        other.reload_zones()
    assert old.events == ["failed", "reload"]


def test_a_full_takeover_hands_over_and_ends_with_the_final_counters(old: FakeOld) -> None:
    taker = TakeoverClient.connect(socket_path(old), pid=99999, step_timeout=5)
    taker.info()
    taker.announce()
    assert taker.challenges() == []
    taken = taker.take(Expected(old.lock_path, Path(socket_path(old))))
    try:
        assert taken.handed.lock_fd is not None and taken.handed.control is not None
        # The pause happened before the descriptors went.
        assert old.events[:1] == ["pause"]

        def close_when_handed_over() -> None:
            # Our "exit": the old daemon's end of the connection closes.
            if old.done.wait(5):
                for sock in old.kept:
                    sock.close()

        closer = threading.Thread(target=close_when_handed_over)
        closer.start()
        final = taker.stop_old(5)
        closer.join(5)
        assert final.counters["udp"]["reqs"] == 7 and final.started == 1_700_000_000
        assert old.events == ["pause", "stop_serving", "handed_over"]
    finally:
        taken.handed.close()
        taker.close()


def test_takeover_requests_without_tak1_fail(old: FakeOld) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(socket_path(old))
    with sock:
        sock.sendall(protocol.takeover_request(RequestKey.TAKE, 1234).encode())
        header = protocol.decode_header(sock.recv(protocol.HEADER_SIZE))
    assert header.key == ResponseKey.FAIL


# --- the helper's pipe ------------------------------------------------------------


def test_verdicts_carry_the_new_pid_or_the_reason() -> None:
    assert parse_verdict(b"OK\n") == daemonize.Verdict(True, "")
    assert parse_verdict(b"OK 4321\n") == daemonize.Verdict(True, "", 4321)
    assert parse_verdict(b"zones/example.com:7: bad address").message == "zones/example.com:7: bad address"
    assert not parse_verdict(b"").ok


def test_the_helper_gives_up_after_its_timeout_and_the_daemon_sees_it() -> None:
    read_end, write_end = os.pipe()
    try:
        verdict = read_verdict(read_end, timeout=0.2)
        assert not verdict.ok and "within 0.2s" in verdict.message
        # The read end is closed now: the new daemon's watch sees its helper gone.
        assert reader_gone(write_end)
    finally:
        os.close(write_end)


def test_a_live_helper_is_not_gone() -> None:
    read_end, write_end = os.pipe()
    assert not reader_gone(write_end)
    StartupReport(write_end).ready(77)  # closes the write end
    assert read_verdict(read_end, timeout=5) == daemonize.Verdict(True, "", 77)  # closes the read end


def test_the_crash_hook_kills_only_at_its_step() -> None:
    new_daemon.crash_point("after-fds", {new_daemon.CRASH_ENV: "after-load"})
    new_daemon.crash_point("after-fds", {})
    child = os.fork()
    if child == 0:
        try:
            new_daemon.crash_point("after-fds", {new_daemon.CRASH_ENV: "after-fds"})
        finally:
            os._exit(3)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


# --- what systemd hears ---------------------------------------------------------------


def test_status_summary_and_pace() -> None:
    assert watchdog.Summary(3, 5012.4, None).text() == "serving 3 zones, 5012 qps, no replace yet"
    text = watchdog.Summary(1, 0.0, time.time()).text()
    assert text.startswith("serving 1 zones, 0 qps, last replace ")
    stats = Stats()
    stats.udp.bump("reqs", 5)
    stats.tcp.bump("reqs", 2)
    assert watchdog.answered(stats) == 7
    # Half of WatchdogSec, never slower than the STATUS pace.
    assert watchdog.interval(4_000_000) == 2.0
    assert watchdog.interval(0) == watchdog.STATUS_INTERVAL
    assert watchdog.interval(600_000_000) == watchdog.STATUS_INTERVAL
