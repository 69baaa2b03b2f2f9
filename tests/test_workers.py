"""Worker processes (``transport.workers``): udp_threads/tcp_threads of 2 means two processes.

Through the whole daemon on loopback: a worker answers while the instance
itself is stopped (SIGSTOP), stats count every process's answers exactly,
a zone reload and admin_state reach every process, a dead worker is
replaced, and neither a stop nor a SIGKILL of the instance leaves a worker
behind. Queries come from many source ports: the kernel spreads them over
the SO_REUSEPORT sockets by source address, so every process gets some.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from dnslib import QTYPE, DNSRecord

from conftest import ForegroundDaemon, free_port, pygdnsd_python
from daemon_support import alive, env, wait_for
from pygdnsd.engine.stats import Stats
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.sttl import Sttl
from pygdnsd.transport.listeners import TCP, UDP, ListenSocket, SocketSpec
from pygdnsd.transport.tcp import TcpLimits
from pygdnsd.transport.worker_process import Share, split, states_from, states_message

SOA = "@ SOA ns1 hostmaster 1 7200 1800 259200 900\n@ NS ns1\nns1 A 192.0.2.1\n"
SOURCES = 40  # source ports per round: all on one socket has odds 2**-39
PRIMARY, SECONDARY = "192.0.2.20", "192.0.2.21"


# -- pure parts ------------------------------------------------------------------


def _listener(kind: str, index: int) -> ListenSocket:
    family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if kind == UDP else socket.SOCK_STREAM)
    return ListenSocket(SocketSpec("127.0.0.1", 53, family, kind, index), sock)


def test_split_gives_worker_k_the_sockets_of_index_k() -> None:
    limits = TcpLimits(idle_timeout=74.0, max_clients=256)
    udp = [_listener(UDP, i) for i in range(3)]
    tcp = [(_listener(TCP, i), limits) for i in range(2)]
    try:
        shares = split(udp, tcp, 3)
        assert [share.number for share in shares] == [0, 1, 2]
        assert shares[0] == Share(0, (udp[0],), (tcp[0],))
        assert shares[1] == Share(1, (udp[1],), (tcp[1],))
        assert shares[2] == Share(2, (udp[2],), ())
        # Fewer processes than sockets (a replace kept surplus ones): the instance serves the rest.
        shares = split(udp, tcp, 2)
        assert shares[0] == Share(0, (udp[0], udp[2]), (tcp[0],))
    finally:
        for listener in [*udp, *(s for s, _ in tcp)]:
            listener.sock.close()


def test_a_workers_monitor_adopts_pushed_states_and_notifies() -> None:
    monitor = Monitor({}, Path("/nonexistent"))
    heard: list[frozenset[str]] = []
    monitor.subscribe(heard.append)
    first = {"a/up": Sttl(down=False), "b/up": Sttl(down=True, ttl=30, forced=True)}
    _kind, payload = states_message(MappingProxyType(first))
    monitor.adopt(states_from(payload))
    assert dict(monitor.states) == first
    monitor.adopt({"a/up": Sttl(down=True)})
    assert dict(monitor.states) == {"a/up": Sttl(down=True)}
    assert heard == [frozenset({"a/up", "b/up"}), frozenset({"a/up", "b/up"})]
    monitor.adopt({"a/up": Sttl(down=True)})
    assert len(heard) == 2  # nothing changed: nobody told


def test_stats_reset_keeps_the_dicts_the_servers_hold() -> None:
    stats = Stats()
    udp = stats.udp.values
    udp["reqs"] = 5
    stats.reset()
    assert stats.udp.values is udp and udp["reqs"] == 0


# -- through the daemon ------------------------------------------------------------


class Site:
    """A config dir (2 UDP + 2 TCP threads) and the daemon serving it."""

    def __init__(self, root: Path, zone: str, body: str = "") -> None:
        self.cfg, self.run_dir, self.state_dir = root / "cfg", root / "run", root / "state"
        for d in (self.cfg / "zones", self.run_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.cfg / "config").write_text(
            "options => {\n  listen => [ 127.0.0.1 ]\n  udp_threads => 2\n  tcp_threads => 2\n"
            f"  dns_port => {self.port}\n  run_dir => {self.run_dir}\n  state_dir => {self.state_dir}\n}}\n"
            + body
        )
        self.write_zone(zone)
        command = [pygdnsd_python(), "-m", "pygdnsd", "-c", str(self.cfg), "start"]
        self.daemon = ForegroundDaemon(command, env(), f"pygdnsd on {self.cfg}", 30.0)

    def write_zone(self, zone: str) -> None:
        (self.cfg / "zones" / "example.com").write_text(SOA + zone)

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def ctl(self, action: str) -> str:
        done = subprocess.run(
            [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-c", str(self.cfg), action],
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def site_factory(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    started: list[Site] = []

    def make(zone: str, body: str = "") -> Site:
        site = Site(tmp_path / f"site{len(started)}", zone, body)
        started.append(site)
        site.daemon.start()
        return site

    yield make
    for site in started:
        workers = children(site.pid) if site.daemon.proc is not None else set()
        with_signal(signal.SIGCONT, site.pid, *workers)
        site.daemon.stop()
        for pid in workers:  # a failed test must not leave one serving
            with_signal(signal.SIGKILL, pid)


def with_signal(signum: int, *pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def ask_from_many(port: int, name: str, qtype: str = "A", wait: float = 3.0) -> list[list[str] | None]:
    """One query from each of SOURCES source ports; each one's answer data (None: no reply)."""
    socks = []
    queries = []
    for _ in range(SOURCES):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        query = DNSRecord.question(name, qtype)
        sock.sendto(query.pack(), ("127.0.0.1", port))
        socks.append(sock)
        queries.append(query)
    answers: list[list[str] | None] = [None] * SOURCES
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline and any(a is None for a in answers):
            for i, sock in enumerate(socks):
                if answers[i] is not None:
                    continue
                try:
                    reply = DNSRecord.parse(sock.recv(4096))
                except BlockingIOError:
                    continue
                if reply.header.id == queries[i].header.id:
                    answers[i] = sorted(str(rr.rdata) for rr in reply.rr if QTYPE[rr.rtype] == qtype)
            time.sleep(0.01)
    finally:
        for sock in socks:
            sock.close()
    return answers


def ask_tcp(port: int, name: str) -> list[str]:
    query = DNSRecord.question(name, "A").pack()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(len(query).to_bytes(2, "big") + query)
        size = int.from_bytes(_read(sock, 2), "big")
        reply = DNSRecord.parse(_read(sock, size))
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_a_worker_process_answers_while_the_instance_is_stopped(site_factory: Callable[..., Site]) -> None:
    site = site_factory("www A 192.0.2.10\n")
    workers = children(site.pid)
    assert len(workers) == 1, workers
    assert all(answer == ["192.0.2.10"] for answer in ask_from_many(site.port, "www.example.com"))
    os.kill(site.pid, signal.SIGSTOP)
    try:
        answers = ask_from_many(site.port, "www.example.com", wait=1.5)
    finally:
        os.kill(site.pid, signal.SIGCONT)
    answered = [a for a in answers if a is not None]
    # Only the worker could answer: the share of the instance's socket waited.
    assert 0 < len(answered) < SOURCES, f"{len(answered)} of {SOURCES} answered with the instance stopped"
    assert all(a == ["192.0.2.10"] for a in answered)


def test_stats_count_the_answers_of_every_process(site_factory: Callable[..., Site]) -> None:
    site = site_factory("www A 192.0.2.10\n")
    rounds = 3
    for _ in range(rounds):
        assert all(answer == ["192.0.2.10"] for answer in ask_from_many(site.port, "www.example.com"))
    for _ in range(10):
        assert ask_tcp(site.port, "www.example.com") == ["192.0.2.10"]
    stats = json.loads(site.ctl("stats"))
    assert stats["udp"]["reqs"] == rounds * SOURCES
    assert stats["tcp"]["reqs"] == 10
    assert stats["stats"]["noerror"] == rounds * SOURCES + 10
    # Counts survive a reload, which replaces the workers.
    site.ctl("reload-zones")
    again = json.loads(site.ctl("stats"))
    assert again["udp"]["reqs"] == rounds * SOURCES
    assert again["stats"]["noerror"] == rounds * SOURCES + 10


def test_reload_zones_reaches_every_process_before_it_is_acknowledged(site_factory: Callable[..., Site]) -> None:
    site = site_factory("www A 192.0.2.10\n")
    before = children(site.pid)
    site.write_zone("www A 192.0.2.11\n")
    site.ctl("reload-zones")
    # Once acknowledged, no process answers from the old data.
    answers = ask_from_many(site.port, "www.example.com")
    assert answers == [["192.0.2.11"]] * SOURCES
    after = children(site.pid)
    assert len(after) == 1 and not after & before, (before, after)
    assert not any(alive(pid) for pid in before)


def test_admin_state_reaches_every_process_within_a_second(site_factory: Callable[..., Site]) -> None:
    body = (
        "plugins => { simplefo => { sf => "
        f"{{ primary => {PRIMARY}, secondary => {SECONDARY}, service_types => up }} }} }}\n"
    )
    site = site_factory("sf 300 DYNA simplefo!sf\n", body)
    assert ask_from_many(site.port, "sf.example.com") == [[PRIMARY]] * SOURCES
    tmp = site.state_dir / "admin_state.tmp"
    tmp.write_text(f"{PRIMARY}/up => DOWN\n")
    started = time.monotonic()
    tmp.rename(site.state_dir / "admin_state")
    assert wait_for(lambda: ask_from_many(site.port, "sf.example.com") == [[SECONDARY]] * SOURCES, 3.0)
    took = time.monotonic() - started
    assert took <= 1.5, f"forced DOWN reached every process after {took:.2f}s"
    (site.state_dir / "admin_state").unlink()
    assert wait_for(lambda: ask_from_many(site.port, "sf.example.com") == [[PRIMARY]] * SOURCES, 3.0)


def test_a_dead_worker_is_replaced(site_factory: Callable[..., Site]) -> None:
    site = site_factory("www A 192.0.2.10\n")
    (worker,) = children(site.pid)
    os.kill(worker, signal.SIGKILL)
    assert wait_for(lambda: len(children(site.pid) - {worker}) == 1 and not alive(worker), 5.0)
    assert all(answer == ["192.0.2.10"] for answer in ask_from_many(site.port, "www.example.com"))
    assert f"worker 1 (PID {worker}) exited unexpectedly (killed by signal 9)" in site.daemon.text


def test_stop_leaves_no_process(site_factory: Callable[..., Site]) -> None:
    site = site_factory("www A 192.0.2.10\n")
    workers = children(site.pid)
    assert workers
    site.ctl("stop")
    assert site.daemon.proc is not None
    site.daemon.proc.wait(timeout=20)
    assert not any(alive(pid) for pid in workers)


def test_sigkill_of_the_instance_leaves_no_worker(site_factory: Callable[..., Site]) -> None:
    site = site_factory("www A 192.0.2.10\n")
    workers = children(site.pid)
    assert workers
    os.kill(site.pid, signal.SIGKILL)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 5.0), (
        [_stat(pid) for pid in workers],
        site.daemon.text[-2000:],
    )
    # Nothing holds the port any more: a fresh socket can take the address.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", site.port))
    except OSError as exc:
        raise AssertionError(f"port {site.port} still bound: {exc}; {[_stat(pid) for pid in workers]}") from exc
    finally:
        probe.close()


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        return f"{pid}: {exc.strerror}"
