"""The daemon's pieces one at a time: lock, pidfile, startup pipe, reloader, watcher, JSON answers, verbs' parsing."""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon_support import wait_for
from pygdnsd.cli import gdnsd
from pygdnsd.control import json_answers
from pygdnsd.daemon import daemon
from pygdnsd.daemon.daemonize import READY, StartupReport, read_verdict
from pygdnsd.daemon.initscript_verbs import process_gone
from pygdnsd.daemon.lock import AlreadyRunning, InstanceLock, ensure_run_dir
from pygdnsd.daemon.pidfile import Pidfile, PidfileState, probe
from pygdnsd.daemon.privileges import lookup_user
from pygdnsd.daemon.start import FreshStart
from pygdnsd.engine.stats import Stats
from pygdnsd.errors import ConfigError, ZoneError, describe
from pygdnsd.instance import Loaded
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.model import ZoneSet
from pygdnsd.zones.reload import ZoneReloader, refuse_replacing_without_dir
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.watcher import ZonesWatcher


def test_lock_is_exclusive_and_released_on_close(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ensure_run_dir(run_dir)
    assert run_dir.stat().st_mode & 0o777 == 0o700
    first = InstanceLock.acquire(run_dir)
    with pytest.raises(AlreadyRunning, match=r"control\.lock"):
        InstanceLock.acquire(run_dir)
    first.release()
    InstanceLock.acquire(run_dir).release()



class RecordedSteps:
    """A daemon's start steps that only record their order; the lock may be taken already."""

    def __init__(self, locked_elsewhere: bool = False) -> None:
        self.locked_elsewhere = locked_elsewhere
        self.steps: list[str] = []

    def acquire_lock(self) -> None:
        self.steps.append("lock")
        if self.locked_elsewhere:
            raise AlreadyRunning("locked")

    def bind(self) -> None:
        self.steps.append("bind")

    def write_pidfile(self) -> None:
        self.steps.append("pidfile")


def test_a_fresh_start_locks_binds_and_writes_the_pidfile_in_that_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    daemon = RecordedSteps()
    start = FreshStart()
    start.begin()
    assert start.acquire(daemon)
    start.claim(daemon)  # READY=1: a no-op without $NOTIFY_SOCKET
    assert daemon.steps == ["lock", "bind", "pidfile"]


def test_a_fresh_start_beside_a_running_instance_fails_unless_idempotent() -> None:
    with pytest.raises(AlreadyRunning):
        FreshStart().acquire(RecordedSteps(locked_elsewhere=True))
    daemon = RecordedSteps(locked_elsewhere=True)
    assert not FreshStart(idempotent=True).acquire(daemon)
    assert daemon.steps == ["lock"]

def test_lock_travels_with_its_descriptor(tmp_path: Path) -> None:
    """What a replace relies on: the flock goes with an fd passed by SCM_RIGHTS."""
    lock = InstanceLock.acquire(tmp_path)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        left.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [lock.fd]))])
        _, ancillary, _, _ = right.recvmsg(1, socket.CMSG_SPACE(4))
        received = array.array("i")
        received.frombytes(ancillary[0][2][: received.itemsize])
    lock.release()  # the old holder lets go of its copy...
    with pytest.raises(AlreadyRunning):
        InstanceLock.acquire(tmp_path)  # ...but the lock is still held, by the new copy
    InstanceLock.adopt(received[0], tmp_path / "control.lock").release()
    InstanceLock.acquire(tmp_path).release()


def test_pidfile_states(tmp_path: Path) -> None:
    path = tmp_path / "gdnsd.pid"
    assert probe(path).state is PidfileState.ABSENT
    pidfile = Pidfile.write(path, 12345)
    assert path.read_text() == "12345\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert probe(path).state is PidfileState.RUNNING and probe(path).pid == 12345
    assert [p.name for p in tmp_path.iterdir()] == ["gdnsd.pid"]
    pidfile.release()
    assert probe(path).state is PidfileState.STALE and probe(path).pid == 12345
    # A stale pidfile never blocks: the next writer replaces it.
    again = Pidfile.write(path, 777)
    assert probe(path).pid == 777
    again.remove()
    assert not path.exists()


def test_pidfile_remove_spares_a_successors_file(tmp_path: Path) -> None:
    path = tmp_path / "gdnsd.pid"
    old = Pidfile.write(path, 1000)
    new = Pidfile.write(path, 2000)  # a replacing instance renames its own over it
    assert not old.is_current() and new.is_current()
    old.remove()
    assert path.read_text() == "2000\n"
    assert probe(path).state is PidfileState.RUNNING
    new.remove()


def test_startup_pipe_verdicts() -> None:
    for send, ok, message in (
        (lambda r: r.ready(), True, ""),
        (lambda r: r.failed("zones/x:3: bad"), False, "zones/x:3: bad"),
    ):
        read_end, write_end = os.pipe()
        report = StartupReport(write_end)
        send(report)
        report.failed("ignored: only the first word counts")
        verdict = read_verdict(read_end)
        assert (verdict.ok, verdict.message) == (ok, message)
    # A daemon that dies before saying anything closes the pipe silently.
    read_end, write_end = os.pipe()
    os.close(write_end)
    verdict = read_verdict(read_end)
    assert not verdict.ok
    assert verdict.message.startswith("the daemon exited during startup")
    assert READY == b"OK\n"


def test_reloader_keeps_old_data_on_error() -> None:
    served: list[ZoneSet] = []
    fresh = ZoneSet()
    outcomes: list[ZoneSet | Exception] = [ZoneError("bad rdata", "zones/example.com", 7), fresh]

    def load() -> ZoneSet:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    reloader = ZoneReloader(load, served.append)
    assert reloader.reload() is False
    assert served == []
    assert reloader.reload() is True
    assert served == [fresh]
    assert (reloader.reloads, reloader.failures) == (1, 1)


def test_a_reload_that_hits_an_empty_exception_reports_its_type_and_meaning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def load() -> ZoneSet:
        raise MemoryError

    reloader = ZoneReloader(load, lambda zones: None)
    with caplog.at_level("INFO"):
        assert reloader.try_reload() == "MemoryError: the process ran out of memory"
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == ["MemoryError: the process ran out of memory", "Reloading zone data failed"]


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (MemoryError(), "MemoryError: the process ran out of memory"),
        (OSError(), "OSError: raised without a message (a bug: the traceback is logged with -D)"),
        (ValueError("bad thing"), "ValueError: bad thing"),
        (ZoneError("bad rdata", "zones/example.com", 7), "zones/example.com:7: bad rdata"),
        (ConfigError(""), "ConfigError: raised without a message (a bug: the traceback is logged with -D)"),
    ],
)
def test_every_failure_reads_as_a_message(exc: BaseException, said: str) -> None:
    assert describe(exc) == said


def test_a_start_that_runs_out_of_memory_reports_why(tmp_path: Path) -> None:
    def load(cfgdir: Path, strict: bool) -> Loaded:
        raise MemoryError

    read_end, write_end = os.pipe()
    with pytest.raises(MemoryError):
        daemon.run(daemon.StartRequest(tmp_path), StartupReport(write_end), load=load)
    assert read_verdict(read_end).message == "startup failed: MemoryError: the process ran out of memory"


ONE_ZONE = "$TTL 300\n@ SOA ns1 hostmaster 1 7200 1800 259200 900\n@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns2 A 192.0.2.2\n"


def test_a_vanished_zones_dir_is_refused_while_zones_serve(tmp_path: Path) -> None:
    zones_dir = tmp_path / "zones"
    zones_dir.mkdir()
    (zones_dir / "example.com").write_text(ONE_ZONE)
    served = [load_zones(zones_dir, ZoneSettings(threads=1))]
    reloader = ZoneReloader(
        lambda: load_zones(zones_dir, ZoneSettings(threads=1)), served.append, zones_dir, lambda: served[-1]
    )
    (zones_dir / "example.com").rename(tmp_path / "example.com")
    zones_dir.rmdir()
    reason = reloader.try_reload()
    assert reason is not None
    assert reason.startswith(f"{zones_dir}: the zones directory does not exist: ")
    assert "the 1 zone(s) loaded before serve on" in reason
    assert len(served) == 1
    # Emptied on purpose (the directory is there): no zones is what is meant.
    zones_dir.mkdir()
    assert reloader.try_reload() is None
    assert len(served) == 2 and served[-1].zones == {}
    # Serving none, a missing directory changes nothing: no error either (as at a start).
    zones_dir.rmdir()
    assert reloader.try_reload() is None


def test_a_replace_refuses_a_vanished_zones_dir_but_not_an_empty_one(tmp_path: Path) -> None:
    zones_dir = tmp_path / "zones"
    with pytest.raises(ZoneError) as refused:
        refuse_replacing_without_dir(zones_dir, load_zones(zones_dir, ZoneSettings(threads=1)))
    assert str(refused.value).startswith(f"{zones_dir}: the zones directory does not exist: not taking over")
    # An empty directory means no zones on purpose; zones loaded before it vanished are served.
    zones_dir.mkdir()
    refuse_replacing_without_dir(zones_dir, load_zones(zones_dir, ZoneSettings(threads=1)))
    (zones_dir / "example.com").write_text(ONE_ZONE)
    loaded = load_zones(zones_dir, ZoneSettings(threads=1))
    (zones_dir / "example.com").unlink()
    zones_dir.rmdir()
    refuse_replacing_without_dir(zones_dir, loaded)


def test_reload_requests_coalesce_on_the_reload_thread() -> None:
    gate = threading.Event()
    loads: list[int] = []

    def load() -> ZoneSet:
        loads.append(1)
        gate.wait(5)
        return ZoneSet()

    reloader = ZoneReloader(load, lambda zones: None)
    reloader.start()
    try:
        for _ in range(20):
            reloader.request()
        deadline = time.monotonic() + 5
        while not loads and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(20):
            reloader.request()  # while the first load runs
        gate.set()
        deadline = time.monotonic() + 5
        while reloader.reloads < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reloader.close()
    assert reloader.reloads == 2  # one for the first burst, one for the second


@pytest.mark.parametrize("use_inotify", [True, False])
def test_watcher_fires_once_per_settled_burst(tmp_path: Path, use_inotify: bool) -> None:
    fired = threading.Event()
    count: list[int] = []

    def on_change() -> None:
        count.append(1)
        fired.set()

    watcher = ZonesWatcher(tmp_path, on_change, settle=0.3, use_inotify=use_inotify)
    assert watcher.mode == ("inotify" if use_inotify else "poll")
    watcher.start()
    try:
        zone = tmp_path / "example.com"
        for i in range(5):  # a file written in pieces
            with zone.open("a") as out:
                out.write(f"line {i}\n")
            time.sleep(0.05)
        assert fired.wait(5)
        time.sleep(0.8)  # longer than a settle and a poll: no second call
    finally:
        watcher.close()
    assert count == [1]


def test_stats_json_is_gdnsd_layout() -> None:
    stats = Stats()
    stats.dns.bump("noerror", 3)
    body = json_answers.stats_json(stats, 42).decode()
    assert body.startswith('{\n\t"uptime": 42,\n\t"stats": {\n\t\t"noerror": 3,\n\t\t"refused": 0,\n')
    assert body.endswith('\t\t"acceptfail": 0\n\t}\n}\n')
    assert json_answers.states_json({}) == b"{\n\n}\n"


def test_unknown_user_names_the_option() -> None:
    with pytest.raises(ConfigError, match="option 'username': no such user 'no-such-user-pygdnsd'"):
        lookup_user("no-such-user-pygdnsd")


@pytest.mark.parametrize(
    "action", ["stop", "status", "restart", "reload-zones", "condrestart", "try-restart"]
)
def test_initscript_verbs_parse(action: str) -> None:
    assert gdnsd.parse_args(["-c", "/x", action]).action == action
    assert action in gdnsd.USAGE.split("Initscript actions")[1]


def test_a_process_is_not_gone_while_a_thread_outlives_its_main_thread() -> None:
    # A killed multi-threaded daemon shows its main thread as a zombie while its
    # other threads still exit and hold its sockets: ``stop`` must wait for them.
    script = (
        "import ctypes, threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "ctypes.CDLL(None).pthread_exit(None)\n"  # the main thread alone ends
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    stat = Path(f"/proc/{child.pid}/stat")
    try:
        assert wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", 10.0)
        assert not process_gone(child.pid)
    finally:
        child.kill()
        child.wait()
    assert process_gone(child.pid)
