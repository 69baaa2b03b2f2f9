"""gdnsd as its own initscript, end to end: daemonize, status, stop, stale state, races, failures."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path

from conftest import pygdnsd_python
from daemon_support import (
    Site,
    a_records,
    alive,
    daemonize,
    env,
    gdnsd,
    pids_serving,
    query,
    wait_for,
)
from pygdnsd.log import NO_LOG_DAEMON_ENV

LOCKED = "Another instance is running and has the control socket locked, failing"  # gdnsd's words


def test_daemonize_status_stop_status(site: Site) -> None:
    pid = daemonize(site)
    assert alive(pid)
    # The foreground process returned only once the daemon served.
    assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
    assert a_records(query(site.port, "www.example.com", tcp=True)) == ["192.0.2.10"]

    status = gdnsd(site, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"running at PID {pid}" in status.stdout

    stop = gdnsd(site, "stop")
    assert stop.returncode == 0, stop.stderr
    # stop returns only after the daemon exited
    assert not alive(pid)
    assert not site.pidfile.exists()

    status = gdnsd(site, "status")
    assert status.returncode == 3, status.stdout
    assert "not running" in status.stdout
    # Stopping what is stopped succeeds, as LSB asks.
    assert gdnsd(site, "stop").returncode == 0


def test_run_dir_socket_and_pidfile_modes(site: Site) -> None:
    site.run_dir.mkdir(mode=0o755)
    pid = daemonize(site)
    assert site.run_dir.stat().st_mode & 0o777 == 0o700
    assert (site.run_dir / "control.sock").stat().st_mode & 0o777 == 0o600
    assert site.pidfile.stat().st_mode & 0o777 == 0o644
    assert site.pidfile.read_text() == f"{pid}\n"
    # Temp files of the atomic write do not linger.
    assert sorted(p.name for p in site.run_dir.iterdir()) == [
        "control.lock", "control.sock", "cookie.autokey", "gdnsd.pid"
    ]


def test_kill_9_leaves_a_stale_pidfile_that_does_not_block_a_start(site: Site) -> None:
    pid = daemonize(site)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not alive(pid))
    assert site.pidfile.read_text() == f"{pid}\n"

    status = gdnsd(site, "status")
    assert status.returncode == 1, status.stdout
    assert "pidfile" in status.stdout

    new_pid = daemonize(site)
    assert new_pid != pid
    assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
    assert gdnsd(site, "status").returncode == 0
    assert gdnsd(site, "stop").returncode == 0
    assert not alive(new_pid)


def test_ten_parallel_starts_run_exactly_one_daemon(site: Site) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    lock = threading.Lock()

    def start() -> None:
        result = gdnsd(site, "daemonize", timeout=120)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=start) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    assert len(results) == 10
    winners = [r for r in results if r.returncode == 0]
    losers = [r for r in results if r.returncode != 0]
    assert len(winners) == 1, [r.stderr for r in results]
    for loser in losers:
        assert LOCKED in loser.stderr, loser.stderr
    pid = int(site.pidfile.read_text())
    assert pids_serving(site.cfgdir) == [pid]
    assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]


def test_idempotent_start_succeeds_when_running(site: Site) -> None:
    pid = daemonize(site)
    again = gdnsd(site, "-i", "daemonize")
    assert again.returncode == 0, again.stderr
    foreground = gdnsd(site, "-i", "start")
    assert foreground.returncode == 0, foreground.stderr
    assert "info: Another instance is already running, success" in foreground.stderr
    plain = gdnsd(site, "daemonize")
    assert plain.returncode == 1
    assert LOCKED in plain.stderr
    assert pids_serving(site.cfgdir) == [pid]


def test_broken_zone_fails_the_start_with_file_and_line(site: Site) -> None:
    site.zone_file.write_text(site.zone_file.read_text() + "broken IN BOGUSTYPE 1\n")
    line = site.zone_file.read_text().count("\n")
    for action in ("daemonize", "start"):
        result = gdnsd(site, action)
        assert result.returncode != 0
        assert f"{site.zone_file}:{line}: " in result.stderr, result.stderr
        assert pids_serving(site.cfgdir) == []
        assert not site.pidfile.exists()


def test_restart_and_condrestart(site: Site) -> None:
    # Nothing runs: condrestart does nothing, restart starts.
    assert gdnsd(site, "condrestart").returncode == 0
    assert pids_serving(site.cfgdir) == []
    restart = gdnsd(site, "restart")
    assert restart.returncode == 0, restart.stderr
    first = int(site.pidfile.read_text())
    again = gdnsd(site, "try-restart")
    assert again.returncode == 0, again.stderr
    second = int(site.pidfile.read_text())
    assert second != first and not alive(first)
    assert pids_serving(site.cfgdir) == [second]
    assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]


def test_sigterm_exits_cleanly_and_answers_inflight_tcp(site: Site) -> None:
    proc = subprocess.Popen(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "start"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(),
    )
    try:
        assert wait_for(lambda: site.pidfile.exists() and (site.run_dir / "control.sock").exists(), 20)
        assert gdnsd(site, "status").returncode == 0
        with socket.create_connection(("127.0.0.1", site.port), timeout=5) as sock:
            packet = bytes.fromhex("abcd01000001000000000000") + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
            # Sent together with the signal: already read or still queued, it is answered.
            assert a_records(query(site.port, "www.example.com", tcp=True)) == ["192.0.2.10"]
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            proc.send_signal(signal.SIGTERM)
            size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
            answer = sock.recv(size, socket.MSG_WAITALL)
        assert a_records(answer) == ["192.0.2.10"]
        assert proc.wait(timeout=5) == 0
        assert proc.stderr is not None
        assert "Exiting cleanly on receipt of terminating signal 15" in proc.stderr.read().decode()
        assert not site.pidfile.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_relative_config_dir_still_works_after_daemonizing(site: Site) -> None:
    # The daemon chdirs to "/", so a relative -c has to be made absolute first.
    result = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", "cfg", "daemonize"],
        cwd=site.root, capture_output=True, text=True, env=env(), timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    site.zone_file.write_text(site.zone_file.read_text().replace("192.0.2.10", "192.0.2.77"))
    assert gdnsd(site, "reload-zones").returncode == 0
    assert a_records(query(site.port, "www.example.com")) == ["192.0.2.77"]
    assert gdnsd(site, "stop").returncode == 0


def test_without_a_log_daemon_a_daemon_logs_to_the_file_it_was_started_with(site: Site, tmp_path: Path) -> None:
    log_file = tmp_path / "gdnsd.log"
    with log_file.open("ab") as err:
        done = subprocess.run(
            [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "daemonize"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env={**env(), NO_LOG_DAEMON_ENV: "1"}, timeout=60, check=False,
        )
    assert done.returncode == 0, log_file.read_text()
    pid = int(site.pidfile.read_text())
    # Written by the daemon itself, after the foreground process had exited.
    assert wait_for(lambda: f"@ pid {pid}\n" in log_file.read_text())
    assert wait_for(lambda: "info: DNS listeners started\n" in log_file.read_text())
    assert gdnsd(site, "stop").returncode == 0
    assert "info: Exiting cleanly due to control socket client request\n" in log_file.read_text()


def test_without_a_log_daemon_daemonize_into_a_pipe_says_the_log_is_lost(site: Site) -> None:
    # A pipe is not kept: whoever reads it (here, subprocess.run) waits for its end.
    done = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "daemonize"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env={**env(), NO_LOG_DAEMON_ENV: "1"}, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "and stderr is no terminal or file the daemon may keep: its log is lost (send stderr to a file" in done.stderr
    assert alive(int(site.pidfile.read_text()))
