"""The overlapped replace without systemd: ``gdnsd daemonize``, then ``gdnsd replace``, under load.

Every daemon here is found by its pidfile or its command line and killed by
PID at teardown (the ``site`` fixture); servers bind loopback only on free
ports. Load comes from ``tests/loadgen.py`` (UDP at a fixed rate, TCP on
fresh connections), run in a thread while the replaces happen.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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
from loadgen import LoadResult, LoadSpec, run_load
from pygdnsd.control.client import ControlClient
from pygdnsd.daemon.pidfile import PidfileState, probe

QNAME = "www.example.com"
UDP_QPS = 5000.0
TCP_RATE = 100.0
# On two shared cores a new daemon's start (imports, zone load) can keep the
# old one off the CPU for more than the ~40 ms of queries a default-sized
# receive queue holds (measured: 664 of 50,000 lost to RcvbufErrors, at
# moments no socket was closed). gdnsd's udp_rcvbuf option at its maximum
# rides that out; the hand-off itself closes no socket that holds queries.
TUNING = "  udp_rcvbuf => 1048576\n"


@pytest.fixture
def tuned(site: Site) -> Site:
    return site.write(TUNING)


@dataclass
class BackgroundLoad:
    """``run_load`` on a thread; ``start`` is (about) the generator's own time zero."""

    spec: LoadSpec
    start: float = 0.0
    drops_before: int = 0
    queue_drops: int = 0
    result: LoadResult | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def begin(self) -> BackgroundLoad:
        def run() -> None:
            self.result = run_load(self.spec)

        self.drops_before = rcvbuf_errors()
        self.start = time.monotonic()
        self._thread = threading.Thread(target=run, name="load", daemon=True)
        self._thread.start()
        return self

    def since_start(self) -> float:
        return time.monotonic() - self.start

    def finish(self) -> LoadResult:
        assert self._thread is not None
        self._thread.join(self.spec.duration + self.spec.grace + 60)
        assert self.result is not None, "the load generator did not finish"
        self.queue_drops = rcvbuf_errors() - self.drops_before
        return self.result

    def report(self) -> str:
        assert self.result is not None
        return f"{self.result.summary()}; kernel queue drops meanwhile: {self.queue_drops}"


def rcvbuf_errors() -> int:
    """Datagrams the kernel dropped on full socket queues (this network namespace, every socket).

    A loss with as many of these is a reader that fell behind (CPU starvation
    on a shared machine); a socket closed with datagrams queued does not count here.
    """
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    return int(values[names.index("RcvbufErrors")])


def load_on(port: int, duration: float, host: str = "127.0.0.1") -> BackgroundLoad:
    spec = LoadSpec(
        host=host, port=port, qname=QNAME, qps=UDP_QPS, tcp_rate=TCP_RATE, duration=duration, grace=2.0
    )
    return BackgroundLoad(spec).begin()


def stats(site: Site) -> dict[str, Any]:
    with ControlClient(str(site.run_dir / "control.sock"), 10) as client:
        client.connect()
        parsed: dict[str, Any] = json.loads(client.stats())
        return parsed


def serves_the_load(site: Site, udp: int = 250, tcp: int = 5, timeout: float = 20.0) -> None:
    """Wait until the daemon has answered ``udp``/``tcp`` more queries than now (polling its stats).

    Called with the load running, instead of sleeping: what comes next (a
    replace) happens under load, on a daemon that is seen answering it. The
    counters carry over a replace, so after one this is the new daemon's work.
    """
    before = stats(site)

    def grown() -> bool:
        now = stats(site)
        return (
            now["udp"]["reqs"] - before["udp"]["reqs"] >= udp
            and now["tcp"]["reqs"] - before["tcp"]["reqs"] >= tcp
        )

    assert wait_for(grown, timeout), f"the daemon did not answer the load: {stats(site)}"


def pidfile_names_locked(site: Site, pid: int) -> bool:
    found = probe(site.pidfile)
    return found.state is PidfileState.RUNNING and found.pid == pid


def replace(site: Site, *flags: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = env()
    environment.pop("PYGDNSD_TEST_CRASH_AT", None)
    environment.update(extra_env or {})
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), *flags, "replace"],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )


def test_twenty_replaces_under_load_lose_nothing(tuned: Site) -> None:
    site = tuned
    pid = daemonize(site)
    load = load_on(site.port, duration=45.0)
    serves_the_load(site)  # the load runs before the first replace
    durations = []
    for number in range(20):
        began = time.monotonic()
        result = replace(site)
        durations.append(time.monotonic() - began)
        assert result.returncode == 0, f"replace {number + 1}: {result.stderr}"
        new_pid = int(site.pidfile.read_text())
        assert new_pid != pid, f"replace {number + 1} left the pidfile at {pid}"
        assert pidfile_names_locked(site, new_pid)
        assert not alive(pid), f"replace {number + 1} returned before the old daemon {pid} exited"
        assert pids_serving(site.cfgdir) == [new_pid]
        pid = new_pid
    # Every replace happened while the load ran.
    assert load.since_start() < load.spec.duration, f"replaces took {sum(durations):.1f}s"
    outcome = load.finish()
    print(f"load: {load.report()}")
    print(f"replace durations: min {min(durations):.2f}s max {max(durations):.2f}s "
          f"mean {sum(durations) / len(durations):.2f}s")
    assert outcome.udp_qps >= UDP_QPS * 0.95
    assert outcome.udp_lost == 0 and outcome.udp_failed == 0, load.report()
    assert outcome.tcp_failed == 0, load.report()
    assert outcome.tcp_answered > 0
    counted = stats(site)
    served = counted["udp"]["reqs"] + counted["tcp"]["reqs"]
    # The last generation counts what all twenty-one answered (and no more than was sent).
    assert served >= outcome.udp_answered + outcome.tcp_answered
    assert served <= outcome.udp_sent + outcome.tcp_sent
    assert counted["uptime"] >= 40


def test_replace_with_a_broken_zone_fails_and_the_old_daemon_serves_on(tuned: Site) -> None:
    site = tuned
    pid = daemonize(site)
    load = load_on(site.port, duration=6.0)
    serves_the_load(site)
    good = site.zone_file.read_text()
    site.zone_file.write_text(good + "www2 A 192.0.2.300\n")
    broken_line = len(good.splitlines()) + 1
    result = replace(site)
    assert result.returncode != 0
    assert f"{site.zone_file}:{broken_line}" in result.stderr, result.stderr
    assert int(site.pidfile.read_text()) == pid and pidfile_names_locked(site, pid)
    assert pids_serving(site.cfgdir) == [pid]
    outcome = load.finish()
    assert outcome.clean, load.report()
    # Fixed, the next replace goes through.
    site.zone_file.write_text(good.replace("192.0.2.10", "192.0.2.11"))
    assert replace(site).returncode == 0
    assert a_records(query(site.port, QNAME)) == ["192.0.2.11"]
    assert not alive(pid)


@pytest.mark.parametrize("step", ["after-load", "after-fds", "before-ready"])
def test_a_new_daemon_killed_at_any_step_leaves_the_old_one_serving(tuned: Site, step: str) -> None:
    site = tuned
    pid = daemonize(site)
    load = load_on(site.port, duration=8.0)
    serves_the_load(site)
    result = replace(site, extra_env={"PYGDNSD_TEST_CRASH_AT": step})
    crashed_at = load.since_start()
    assert result.returncode != 0
    assert "without saying why" in result.stderr, result.stderr
    assert int(site.pidfile.read_text()) == pid and pidfile_names_locked(site, pid)
    assert wait_for(lambda: pids_serving(site.cfgdir) == [pid], 5.0)
    # The old daemon takes control requests again (its uptime is whole seconds:
    # polled, as it may be under one), and a replace now succeeds.
    assert wait_for(lambda: stats(site)["uptime"] >= 1, 5.0)
    serves_the_load(site)  # the old daemon alone, after the crash
    again_at = load.since_start()
    again = replace(site)
    again_done = load.since_start()
    assert again.returncode == 0, again.stderr
    new_pid = int(site.pidfile.read_text())
    assert new_pid != pid and not alive(pid)
    outcome = load.finish()
    print(f"{step}: {load.report()} (crash at {crashed_at:.2f}s, replace {again_at:.2f}-{again_done:.2f}s, "
          f"losses at {outcome.udp_loss_times[:3]}..{outcome.udp_loss_times[-3:]})")
    if step == "before-ready":
        # Killed while it served beside the old daemon: what it had read in
        # that instant dies with it; nothing is lost after that.
        late = [t for t in outcome.udp_loss_times + outcome.tcp_failure_times if t > crashed_at]
        assert late == [], load.report()
    else:
        assert outcome.clean, load.report()


def test_replace_with_nothing_running_starts_one_and_says_nothing_of_a_replace(site: Site) -> None:
    # As gdnsd -R: nothing to take over is a plain start, silent on success.
    result = replace(site)
    assert result.returncode == 0, result.stderr
    assert "replac" not in result.stderr.lower() and "none running" not in result.stderr, result.stderr
    pid = int(site.pidfile.read_text())
    assert pidfile_names_locked(site, pid)
    assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]


def test_a_new_daemon_killed_after_the_hand_off_is_reported_as_nothing_serving(site: Site) -> None:
    old_pid = daemonize(site)
    result = replace(site, extra_env={"PYGDNSD_TEST_CRASH_AT": "after-claim"})
    assert result.returncode == 1
    found = probe(site.pidfile)
    # The facts first: the old daemon handed over and exited, the new one died
    # after rewriting the pidfile, and nothing answers.
    assert not alive(old_pid)
    assert found.state is PidfileState.STALE and found.pid not in (None, old_pid)
    assert gdnsd(site, "status").returncode == 1  # LSB: dead, pidfile remains
    # Then that the helper said so, and nothing else.
    assert "serves on" not in result.stderr, result.stderr
    assert (
        "nothing serves now (no daemon answers on the control socket or holds the pidfile); "
        f"the old daemon (PID {old_pid}) has exited; "
        f"the pidfile {site.pidfile} names PID {found.pid}, which has exited "
        f"(start one with: gdnsd -c {site.cfgdir} daemonize)"
    ) in result.stderr, result.stderr
    # What it says to run works.
    assert gdnsd(site, "daemonize").returncode == 0
    assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]


def dns_query_to(host: str, port: int, tcp: bool = False, timeout: float = 2.0) -> bytes:
    packet = struct.pack("!HHHHHH", 0x4242, 0, 1, 0, 0, 0) + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            data = b""
            for _ in range(100):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                if len(data) >= 2 and len(data) >= 2 + struct.unpack("!H", data[:2])[0]:
                    break
            return data[2:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (host, port))
        return sock.recv(4096)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def write_listen(site: Site, *hosts: str) -> None:
    config = site.cfgdir / "config"
    text = config.read_text()
    start = text.index("listen =>")
    end = text.index("\n", start)
    config.write_text(text[:start] + f"listen => [ {', '.join(hosts)} ]" + text[end:])


def test_a_replace_adds_one_address_and_removes_another(tuned: Site) -> None:
    site = tuned
    write_listen(site, "127.0.0.1", "127.0.0.2")
    pid = daemonize(site)
    assert a_records(dns_query_to("127.0.0.2", site.port)) == ["192.0.2.10"]
    assert not listening("127.0.0.3", site.port)
    load = load_on(site.port, duration=5.0)
    serves_the_load(site)
    write_listen(site, "127.0.0.1", "127.0.0.3")
    result = replace(site)
    assert result.returncode == 0, result.stderr
    assert not alive(pid)
    assert a_records(dns_query_to("127.0.0.3", site.port)) == ["192.0.2.10"]
    assert a_records(dns_query_to("127.0.0.3", site.port, tcp=True)) == ["192.0.2.10"]
    assert not listening("127.0.0.2", site.port)
    with pytest.raises(OSError):
        dns_query_to("127.0.0.2", site.port, timeout=0.5)
    outcome = load.finish()
    assert outcome.clean, load.report()


def test_an_unreachable_old_daemon_is_overlapped_and_stopped_by_signal(tuned: Site, tmp_path: Path) -> None:
    site = tuned
    old = daemonize(site)
    os.kill(old, signal.SIGSTOP)
    log_path = tmp_path / "new.log"
    environment = env()
    environment.pop("PYGDNSD_TEST_CRASH_AT", None)
    with log_path.open("w") as log_file:
        new = subprocess.Popen(
            [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "-R", "start"],
            stdout=log_file, stderr=subprocess.STDOUT, env=environment, stdin=subprocess.DEVNULL,
        )
    try:
        def done() -> bool:
            return "replace complete" in log_path.read_text() or new.poll() is not None
        assert wait_for(done, 60.0), log_path.read_text()
        log_text = log_path.read_text()
        assert new.poll() is None, log_text
        assert "queries may be lost" in log_text
        assert "sending SIGTERM to the old daemon" in log_text
        assert not alive(old)
        assert pidfile_names_locked(site, new.pid)
        assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]
        assert a_records(query(site.port, QNAME, tcp=True)) == ["192.0.2.10"]
        # It holds the instance lock: a plain start is refused.
        assert gdnsd(site, "daemonize").returncode != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGCONT)
        new.terminate()
        new.wait(20)



def gdnsdctl(kind: str, site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    if kind == "debian":
        command = ["/usr/bin/gdnsdctl"]
    else:
        command = [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl"]
    return subprocess.run(
        [*command, "-c", str(site.cfgdir), *args],
        capture_output=True, text=True, env=env(), timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("kind", ["ours", "debian"])
def test_gdnsdctl_replace_has_the_old_daemon_spawn_its_successor(tuned: Site, kind: str) -> None:
    site = tuned
    if kind == "debian" and not Path("/usr/bin/gdnsdctl").exists():
        pytest.fail("Debian's gdnsdctl is part of this project's reference environment")
    pid = daemonize(site)
    load = load_on(site.port, duration=5.0)
    serves_the_load(site)
    result = gdnsdctl(kind, site, "replace")
    assert result.returncode == 0, result.stderr
    assert "SUCCESS" in result.stderr
    new_pid = int(site.pidfile.read_text())
    assert new_pid != pid
    # gdnsdctl saw the old daemon's control connection close: its last act before exiting.
    assert wait_for(lambda: not alive(pid), 5.0)
    assert pidfile_names_locked(site, new_pid)
    assert wait_for(lambda: pids_serving(site.cfgdir) == [new_pid], 10.0)
    outcome = load.finish()
    assert outcome.clean, load.report()
    assert stats(site)["udp"]["reqs"] >= outcome.udp_answered


def test_gdnsdctl_replace_with_a_broken_zone_fails_and_the_old_daemon_serves_on(tuned: Site) -> None:
    site = tuned
    pid = daemonize(site)
    site.zone_file.write_text(site.zone_file.read_text() + "www3 A not-an-address\n")
    result = gdnsdctl("ours", site, "replace")
    assert result.returncode != 0
    assert "REPLACE[gdnsdctl]: Replace command to old daemon failed" in result.stderr, result.stderr
    assert pids_serving(site.cfgdir) == [pid] and pidfile_names_locked(site, pid)
    assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]


def answers_soa(site: Site, zone: str) -> bool:
    response = query(site.port, zone, qtype=6)
    rcode = response[3] & 0x0F
    (answers,) = struct.unpack("!H", response[6:8])
    return rcode == 0 and answers == 1


def test_a_replace_that_finds_the_zones_dir_gone_fails_and_the_old_daemon_serves_on(site: Site) -> None:
    # gdnsd 3.8.1 takes over with no zones here (measured: REFUSED for every
    # zone afterwards); the new daemon must refuse before touching the old one.
    pid = daemonize(site)
    zones_dir = site.cfgdir / "zones"
    moved = site.cfgdir / "zones.moved"
    zones_dir.rename(moved)
    result = replace(site)
    assert result.returncode != 0
    assert f"{zones_dir}: the zones directory does not exist: not taking over" in result.stderr, result.stderr
    by_gdnsdctl = gdnsdctl("ours", site, "replace")
    assert by_gdnsdctl.returncode != 0
    assert "REPLACE[gdnsdctl]: Replace command to old daemon failed" in by_gdnsdctl.stderr, by_gdnsdctl.stderr
    assert wait_for(lambda: pids_serving(site.cfgdir) == [pid], 5.0), pids_serving(site.cfgdir)
    assert pidfile_names_locked(site, pid)
    assert answers_soa(site, "example.com")
    # Restored, the next replace goes through and serves the zone.
    moved.rename(zones_dir)
    again = replace(site)
    assert again.returncode == 0, again.stderr
    assert int(site.pidfile.read_text()) != pid and not alive(pid)
    assert answers_soa(site, "example.com")


def test_a_replace_past_its_timeout_fails_and_the_new_daemon_gives_up(tuned: Site) -> None:
    site = tuned
    old = daemonize(site)
    # A stopped old daemon keeps the new one waiting for its REQ_INFO answer.
    os.kill(old, signal.SIGSTOP)
    try:
        began = time.monotonic()
        result = replace(site, "-t", "1")
        waited = time.monotonic() - began
        assert result.returncode != 0
        assert "no verdict from the new daemon within 1s" in result.stderr, result.stderr
        assert waited < 4.0
        # The new daemon saw its helper's pipe close and left without touching the old one.
        assert wait_for(lambda: pids_serving(site.cfgdir) == [old], 5.0), pids_serving(site.cfgdir)
    finally:
        os.kill(old, signal.SIGCONT)
    assert pidfile_names_locked(site, old)
    assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]
    assert stats(site)["uptime"] >= 0


def set_threads(site: Site, count: int) -> None:
    config = site.cfgdir / "config"
    text = config.read_text()
    for kind in ("udp_threads", "tcp_threads"):
        start = text.index(f"{kind} =>")
        end = text.index("\n", start)
        text = text[:start] + f"{kind} => {count}" + text[end:]
    config.write_text(text)


def test_replaces_that_change_the_thread_counts_lose_nothing(tuned: Site) -> None:
    site = tuned
    daemonize(site)
    load = load_on(site.port, duration=6.0)
    serves_the_load(site)
    # More threads: fresh SO_REUSEPORT sockets join each address's group.
    set_threads(site, 3)
    more = replace(site)
    assert more.returncode == 0, more.stderr
    serves_the_load(site)  # on the new daemon's three sockets per address
    # Fewer: a surplus socket gets its share of the traffic until it is closed,
    # so the new daemon serves it on rather than drop what is queued in it.
    set_threads(site, 1)
    fewer = replace(site)
    assert fewer.returncode == 0, fewer.stderr
    outcome = load.finish()
    assert outcome.clean, load.report()
    assert len(pids_serving(site.cfgdir)) == 1
