"""reload-zones in place: under query load, with a broken zone, by SIGHUP, and zones_auto_reload."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, pygdnsd_python
from daemon_support import (
    DEBIAN_GDNSDCTL,
    Site,
    a_records,
    daemonize,
    debian_gdnsdctl,
    env,
    gdnsd,
    kill_all,
    query,
    wait_for,
    zone_text,
)
from pygdnsd.log import NO_LOG_DAEMON_ENV

OLD = ["192.0.2.10", "192.0.2.11"]
NEW = ["192.0.2.20", "192.0.2.21"]


def two_addresses(site: Site, pair: list[str]) -> None:
    text = zone_text(pair[0]) + f"www A {pair[1]}\n"
    # Written beside and renamed, as an operator's tooling would.
    temp = site.zone_file.with_name(".example.com.tmp")
    temp.write_text(text)
    temp.rename(site.zone_file)


class Prober:
    """Sends queries back to back from a thread, remembering every answer (or failure)."""

    def __init__(self, port: int, limit: int = 200_000, seconds: float = 120.0) -> None:
        self.port = port
        self.limit = limit
        self.seconds = seconds
        self.answers: list[tuple[str, ...]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.connect(("127.0.0.1", self.port))
            for qid in range(self.limit):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                packet = qid.to_bytes(2, "big") + bytes.fromhex("01000001000000000000")
                packet += b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
                try:
                    sock.send(packet)
                    response = sock.recv(4096)
                except OSError as exc:
                    self.failures.append(f"query {qid}: {exc}")
                    continue
                if response[:2] != packet[:2] or response[3] & 0x0F != 0:
                    self.failures.append(f"query {qid}: bad response {response[:4].hex()}")
                    continue
                self.answers.append(tuple(a_records(response)))

    def wait_count(self, count: int) -> None:
        assert wait_for(lambda: len(self.answers) + len(self.failures) >= count, 60)


def test_reload_under_load_switches_atomically_and_loses_nothing(site: Site) -> None:
    two_addresses(site, OLD)
    daemonize(site)
    windows = []  # answer counts just before each reload command and just after it returned
    with Prober(site.port) as prober:
        prober.wait_count(1000)
        two_addresses(site, NEW)
        windows.append(len(prober.answers))
        result = gdnsd(site, "reload-zones")
        assert result.returncode == 0, result.stderr
        windows.append(len(prober.answers))
        prober.wait_count(windows[-1] + 1000)
        # Back again through Debian's client, for a second switch under load.
        two_addresses(site, OLD)
        windows.append(len(prober.answers))
        if DEBIAN_GDNSDCTL.exists():
            assert debian_gdnsdctl(site, "reload-zones").returncode == 0
        else:
            assert gdnsd(site, "reload-zones").returncode == 0
        windows.append(len(prober.answers))
        prober.wait_count(windows[-1] + 1000)
    assert prober.failures == []
    assert len(prober.answers) >= 3000
    seen = [list(answer) for answer in prober.answers]
    # Every answer is one whole generation, never a mix...
    assert all(answer in (OLD, NEW) for answer in seen)
    assert seen[0] == OLD and seen[-1] == OLD
    # ...and the data switched exactly twice, each time while the reload
    # command ran (one more answer may have been in flight as it returned).
    changes = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert len(changes) == 2, changes
    assert windows[0] <= changes[0] <= windows[1] + 1, (changes, windows)
    assert windows[2] <= changes[1] <= windows[3] + 1, (changes, windows)


def start_foreground(site: Site, *flags: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), *flags, "start"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**env(), **(extra_env or {})},
    )
    ready = wait_for(lambda: (site.run_dir / "control.sock").exists() and site.pidfile.exists(), 30)
    if not ready:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("daemon did not start")
    return proc


def finish(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.stderr is not None
    return proc.stderr.read().decode()


def test_broken_zone_on_reload_keeps_the_old_data(site: Site) -> None:
    proc = start_foreground(site)
    try:
        site.zone_file.write_text(zone_text("192.0.2.99") + "broken IN BOGUSTYPE 1\n")
        line = site.zone_file.read_text().count("\n")
        ours = gdnsd(site, "reload-zones")
        assert ours.returncode == 1
        assert "reloading zones failed" in ours.stderr
        if DEBIAN_GDNSDCTL.exists():
            theirs = debian_gdnsdctl(site, "reload-zones")
            assert theirs.returncode == 42, theirs.stderr
            assert "fatal: Reload transaction failed" in theirs.stderr
        assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
        assert a_records(query(site.port, "www.example.com", tcp=True)) == ["192.0.2.10"]
        # Fixed, the next reload takes.
        site.zone_file.write_text(zone_text("192.0.2.30"))
        assert gdnsd(site, "reload-zones").returncode == 0
        assert a_records(query(site.port, "www.example.com")) == ["192.0.2.30"]
    finally:
        log = finish(proc)
    assert f"error: {site.zone_file}:{line}: " in log
    assert "error: Reloading zone data failed" in log


def our_gdnsdctl(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-c", str(site.cfgdir), *args],
        capture_output=True, text=True, env=env(), timeout=60, check=False,
    )


def test_a_failed_reload_says_why_where_it_was_asked_and_never_logs_into_the_void(site: Site) -> None:
    # -l with no syslog listening (the test hook makes it so on any machine):
    # the daemon's lines must come out on stderr rather than be dropped.
    proc = start_foreground(site, "-l", extra_env={NO_LOG_DAEMON_ENV: "1"})
    try:
        site.zone_file.write_text(zone_text() + "broken IN BOGUSTYPE 1\n")
        line = site.zone_file.read_text().count("\n")
        reason = f"{site.zone_file}:{line}: unsupported record type 'BOGUSTYPE'"
        ctl = our_gdnsdctl(site, "reload-zones")
        assert (ctl.returncode, ctl.stderr) == (42, f"error: {reason}\nfatal: Reload transaction failed\n")
        ours = gdnsd(site, "reload-zones")
        assert (ours.returncode, ours.stderr) == (1, f"error: reloading zones failed: {reason}\n")
        if DEBIAN_GDNSDCTL.exists():
            # Debian's gdnsdctl does not ask for the reason: it hears what gdnsd would say.
            theirs = debian_gdnsdctl(site, "reload-zones")
            assert (theirs.returncode, theirs.stderr) == (42, "fatal: Reload transaction failed\n")
        assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
    finally:
        log = finish(proc)
    assert log.startswith("warning: syslog is not reachable (no socket at /dev/log"), log
    assert ": logging to stderr instead\n" in log
    assert f"error: {reason}\nerror: Reloading zone data failed\n" in log


def rcode(response: bytes) -> int:
    return response[3] & 0x0F


def test_a_reload_that_finds_the_zones_dir_gone_fails_and_the_zones_serve_on(site: Site) -> None:
    proc = start_foreground(site)
    zones_dir = site.cfgdir / "zones"
    try:
        zones_dir.rename(site.cfgdir / "zones.moved")
        gone = gdnsd(site, "reload-zones")
        assert gone.returncode == 1
        assert f"error: reloading zones failed: {zones_dir}: the zones directory does not exist: " in gone.stderr
        assert "the 1 zone(s) loaded before serve on" in gone.stderr
        assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
        # An empty directory says "no zones": that reload goes through, and nothing is served.
        zones_dir.mkdir()
        emptied = gdnsd(site, "reload-zones")
        assert emptied.returncode == 0, emptied.stderr
        assert rcode(query(site.port, "www.example.com")) == 5  # REFUSED: no zone holds the name
    finally:
        log = finish(proc)
    assert f"error: {zones_dir}: the zones directory does not exist: " in log
    assert "info: Zone data reloaded (0 zones)" in log


def test_sighup_reloads(site: Site) -> None:
    proc = start_foreground(site)
    try:
        site.zone_file.write_text(zone_text("192.0.2.40"))
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: a_records(query(site.port, "www.example.com")) == ["192.0.2.40"], 10)
        assert proc.poll() is None
    finally:
        finish(proc)


@pytest.mark.parametrize("edit", ["in_place", "rename", "new_zone"])
def test_auto_reload_picks_up_an_edit_within_2s(tmp_path: Path, edit: str) -> None:
    made = Site(tmp_path / "site", free_port()).write("  zones_auto_reload => true\n")
    try:
        # No wait for the watcher: daemonize returns once the daemon serves, and it
        # opened its watch on the directory before that.
        daemonize(made)
        began = time.monotonic()
        if edit == "in_place":
            with open(made.zone_file, "w") as out:
                out.write(zone_text("192.0.2.50"))
            name, want = "www.example.com", ["192.0.2.50"]
        elif edit == "rename":
            two_addresses(made, NEW)
            name, want = "www.example.com", NEW
        else:
            (made.cfgdir / "zones" / "example.net").write_text(zone_text("192.0.2.60"))
            name, want = "www.example.net", ["192.0.2.60"]
        assert wait_for(lambda: a_records(query(made.port, name)) == want, 2.0)
        assert time.monotonic() - began < 2.0
    finally:
        kill_all(made.cfgdir)
