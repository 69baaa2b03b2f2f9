"""The Monitor against real loopback servers: tcp_connect, http_status, extmon,
a 500-resource initial round, admin_state, and ``states_json`` vs gdnsd 3.8.1."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, free_port
from daemon_support import wait_for
from pygdnsd.config.vscf import ConfigHash, parse_bytes
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.service_types import parse_service_types
from pygdnsd.monitoring.sttl import Sttl
from pygdnsd.plugins.registry import load_plugins

REQUESTS: list[str] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        REQUESTS.append(
            f"{self.requestline}|{self.headers.get('Host')}|{self.headers.get('User-Agent')}"
        )
        self.send_response(200 if self.path == "/ok" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def tcp_port() -> Iterator[int]:
    """A listener that accepts and closes every connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    listener.close()


def monitor_for(config: str, state_dir: Path) -> tuple[Monitor, object]:
    top = parse_bytes(config.encode(), "config")
    assert isinstance(top, ConfigHash)
    stypes, plugins = top["service_types"], top["plugins"]
    assert isinstance(stypes, ConfigHash) and isinstance(plugins, ConfigHash)
    monitor = Monitor(parse_service_types(stypes, state_dir), state_dir)
    return monitor, load_plugins(plugins, monitor)


def test_tcp_and_http_checks(tmp_path: Path, tcp_port: int, http_port: int) -> None:
    closed = free_port()
    config = f"""
    service_types => {{
      tcp => {{ plugin => tcp_connect, port => {tcp_port}, interval => 2, timeout => 1 }}
      shut => {{ plugin => tcp_connect, port => {closed}, interval => 2, timeout => 1 }}
      web => {{ plugin => http_status, port => {http_port}, url_path => /ok, vhost => www.example.com }}
      web404 => {{ plugin => http_status, port => {http_port} }}
      web404ok => {{ plugin => http_status, port => {http_port}, ok_codes => [ 404 ] }}
    }}
    plugins => {{ multifo => {{
      a => {{ service_types => [ tcp ], x => 127.0.0.1 }}
      b => {{ service_types => [ shut ], x => 127.0.0.1 }}
      c => {{ service_types => [ web, web404, web404ok ], x => 127.0.0.1 }}
    }} }}
    """
    monitor, _ = monitor_for(config, tmp_path)
    REQUESTS.clear()
    monitor.initial_round()
    states = monitor.states
    assert states["127.0.0.1/tcp"] == Sttl(down=False, ttl=20)
    assert states["127.0.0.1/shut"] == Sttl(down=True, ttl=40)
    assert not states["127.0.0.1/web"].down
    assert states["127.0.0.1/web404"].down
    assert not states["127.0.0.1/web404ok"].down
    # The request gdnsd 3.8.1 sends (seen by the same server).
    assert "GET /ok HTTP/1.1|www.example.com|gdnsd-monitor" in REQUESTS
    assert "GET / HTTP/1.1|None|gdnsd-monitor" in REQUESTS


def _children_of_me() -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                out.append((int(entry.name), fields[0]))
    return out


def test_extmon_hang_is_killed_at_timeout_without_zombies(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    config = f"""
    service_types => {{
      hang => {{ plugin => extmon, timeout => 1, interval => 2, cmd => [ /bin/sh, -c, "echo $$ >> {pidfile}; exec sleep 30", %%ITEM%% ] }}
      fine => {{ plugin => extmon, timeout => 1, interval => 2, cmd => [ /bin/sh, -c, "test $0 = 192.0.2.7", %%ITEM%% ] }}
      bad => {{ plugin => extmon, timeout => 1, interval => 2, cmd => [ /bin/false ] }}
    }}
    plugins => {{ multifo => {{ r => {{ service_types => [ hang, fine, bad ], x => 192.0.2.7 }} }} }}
    """
    monitor, _ = monitor_for(config, tmp_path)
    started = time.monotonic()
    monitor.initial_round()
    assert time.monotonic() - started < 5
    states = monitor.states
    assert states["192.0.2.7/hang"].down
    assert not states["192.0.2.7/fine"].down
    assert states["192.0.2.7/bad"].down
    pid = int(pidfile.read_text().split()[0])
    assert not Path(f"/proc/{pid}").exists(), "the hung command was not killed and reaped"
    assert _children_of_me() == []


def test_extmon_children_get_no_sockets(tmp_path: Path) -> None:
    out = tmp_path / "fds"
    config = f"""
    service_types => {{ fds => {{ plugin => extmon, timeout => 2, interval => 3, cmd => [ /bin/sh, -c, "ls /proc/self/fd > {out}" ] }} }}
    plugins => {{ multifo => {{ r => {{ service_types => fds, x => 192.0.2.7 }} }} }}
    """
    monitor, _ = monitor_for(config, tmp_path)
    # A socket without CLOEXEC, like one handed over by a previous daemon.
    leaky = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    leaky.set_inheritable(True)
    try:
        monitor.initial_round()
    finally:
        leaky.close()
    # ls itself opens one directory fd (3) beyond stdin/stdout/stderr.
    assert sorted(int(x) for x in out.read_text().split()) == [0, 1, 2, 3]


def test_initial_round_of_500_is_bounded_by_one_timeout(
    tmp_path: Path, tcp_port: int, blackhole_port: int
) -> None:
    types = []
    refs = []
    for i in range(250):
        types.append(
            f"live{i} => {{ plugin => tcp_connect, port => {tcp_port}, timeout => 2, interval => 5 }}"
        )
        types.append(
            f"hole{i} => {{ plugin => tcp_connect, port => {blackhole_port}, timeout => 2, interval => 5 }}"
        )
        refs += [f"live{i}", f"hole{i}"]
    config = (
        "service_types => {" + "\n".join(types) + "}\n"
        "plugins => { multifo => { r => { service_types => ["
        + ", ".join(refs)
        + "], x => 127.0.0.1 } } }"
    )
    monitor, _ = monitor_for(config, tmp_path)
    assert len(monitor.names()) == 500
    started = time.monotonic()
    monitor.initial_round()
    elapsed = time.monotonic() - started
    assert elapsed <= 3.0, f"initial round took {elapsed:.1f}s"
    states = monitor.states
    assert all(not states[f"127.0.0.1/live{i}"].down for i in range(250))
    assert all(states[f"127.0.0.1/hole{i}"].down for i in range(250))


def test_admin_state_forcing_applies_within_a_second(tmp_path: Path, tcp_port: int) -> None:
    config = f"""
    service_types => {{ tcp => {{ plugin => tcp_connect, port => {tcp_port}, interval => 10 }} }}
    plugins => {{ simplefo => {{ service_types => tcp, r => {{ primary => 127.0.0.1, secondary => 127.0.0.2 }} }} }}
    """
    monitor, _ = monitor_for(config, tmp_path)
    changes: list[frozenset[str]] = []
    monitor.subscribe(changes.append)
    monitor.initial_round()
    assert not monitor.states["127.0.0.1/tcp"].down
    monitor.start()
    try:
        admin = tmp_path / "admin_state"
        admin.write_text("127.0.0.1/* => DOWN/30\n")
        assert wait_for(lambda: monitor.states["127.0.0.1/tcp"].down, 1.0)
        assert monitor.states["127.0.0.1/tcp"] == Sttl(down=True, ttl=30, forced=True)
        assert any("127.0.0.1/tcp" in c for c in changes)
        assert '"127.0.0.1/tcp": {"state": "DOWN!", "real_state": "UP"}' in monitor.states_json()
        admin.write_text("127.0.0.1/* => DOWN/30\n127.0.0.1/tcp => UP\n")
        assert wait_for(lambda: not monitor.states["127.0.0.1/tcp"].down, 1.0)
        assert '"state": "UP!"' in monitor.states_json()
        admin.unlink()
        assert wait_for(lambda: not monitor.states["127.0.0.1/tcp"].forced, 1.0)
    finally:
        monitor.stop()


def test_admin_state_written_between_the_first_round_and_start_is_applied(tmp_path: Path, tcp_port: int) -> None:
    # The daemon runs the first round long before it starts the monitor (lock, bind,
    # the fork of its workers come between): a file written then must not be missed.
    config = f"""
    service_types => {{ tcp => {{ plugin => tcp_connect, port => {tcp_port}, interval => 10 }} }}
    plugins => {{ simplefo => {{ service_types => tcp, r => {{ primary => 127.0.0.1, secondary => 127.0.0.2 }} }} }}
    """
    monitor, _ = monitor_for(config, tmp_path)
    monitor.initial_round()
    assert not monitor.states["127.0.0.1/tcp"].down
    (tmp_path / "admin_state").write_text("127.0.0.1/* => DOWN/30\n")
    time.sleep(0.3)  # the daemon's gap between the round and the start: not a wait for anything
    monitor.start()
    try:
        assert wait_for(lambda: monitor.states["127.0.0.1/tcp"].down, 1.0)
    finally:
        monitor.stop()


def test_runner_notices_a_backend_going_down(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = int(listener.getsockname()[1])
    config = f"""
    service_types => {{ tcp => {{ plugin => tcp_connect, port => {port}, interval => 2, timeout => 1, down_thresh => 1 }} }}
    plugins => {{ multifo => {{ r => {{ service_types => tcp, x => 127.0.0.1 }} }} }}
    """
    monitor, _ = monitor_for(config, tmp_path)
    monitor.initial_round()
    assert not monitor.states["127.0.0.1/tcp"].down
    monitor.start()
    try:
        listener.close()
        # interval x down_thresh + 1 s
        assert wait_for(lambda: monitor.states["127.0.0.1/tcp"].down, 3.0)
    finally:
        monitor.stop()
        listener.close()


@pytest.mark.skipif(not REAL_GDNSD.exists(), reason="needs Debian's gdnsd 3.8.1")
def test_states_json_matches_gdnsd(tmp_path: Path, tcp_port: int, http_port: int) -> None:
    closed = free_port()
    dns_port = free_port()
    run_dir, state_dir, cfg = tmp_path / "run", tmp_path / "state", tmp_path / "cfg"
    for d in (run_dir, state_dir, cfg / "zones"):
        d.mkdir(parents=True)
    body = f"""
    service_types => {{
      tcp => {{ plugin => tcp_connect, port => {tcp_port}, interval => 2, timeout => 1 }}
      shut => {{ plugin => tcp_connect, port => {closed}, interval => 2, timeout => 1 }}
      web => {{ plugin => http_status, port => {http_port}, url_path => /ok }}
    }}
    plugins => {{
      simplefo => {{ service_types => [ tcp, web ], sf => {{ primary => 127.0.0.1, secondary => 127.0.0.2 }} }}
      multifo => {{ service_types => shut, mf => [ 127.0.0.3, 127.0.0.1 ] }}
      metafo => {{ resources => {{ mt => {{ datacenters => [ one, two ], dcmap => {{ one => !sf, two => 127.0.0.9 }}, plugin => simplefo }} }} }}
    }}
    """
    (cfg / "config").write_text(
        f"options => {{ listen => [127.0.0.1], dns_port => {dns_port}, run_dir => {run_dir}, state_dir => {state_dir} }}\n"
        + body
    )
    (cfg / "zones" / "example.com").write_text(
        "@ SOA ns1 hostmaster 1 7200 1800 259200 900\n@ NS ns1\nns1 A 192.0.2.1\n"
        "sf 300 DYNA simplefo!sf\nmf 300 DYNA multifo!mf\nmt 300 DYNA metafo!mt\n"
    )
    (state_dir / "admin_state").write_text("127.0.0.2/* => DOWN\nmetafo/mt/two => UP/20\n")
    monitor, _ = monitor_for(body, state_dir)
    monitor.initial_round()
    ours = monitor.states_json()
    proc = subprocess.Popen(
        [str(REAL_GDNSD), "-c", str(cfg), "start"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        ready = False
        for _ in range(200):
            line = proc.stderr.readline().decode()
            if not line or "DNS listeners started" in line:
                ready = bool(line)
                break
        assert ready, "gdnsd did not start"
        theirs = subprocess.run(
            [shutil.which("gdnsdctl") or "/usr/bin/gdnsdctl", "-c", str(cfg), "states"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert ours == theirs, (ours, theirs)
    assert ours.count("\n") > 5
