"""The status listener in a real daemon: /metrics and /json against gdnsdctl stats, reloads, replaces, abuse.

Every daemon is daemonized on loopback and free ports and killed by PID at
teardown (the ``site`` fixture).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

from conftest import free_port, pygdnsd_python
from daemon_support import Site, a_records, alive, daemonize, env, gdnsd, query, wait_for, zone_text
from pygdnsd.status.process import resident_bytes
from status_support import QNAME, as_stats, fetch, gdnsdctl_stats, http_site, metrics


def gdnsdctl(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-c", str(site.cfgdir), *args],
        capture_output=True, text=True, env=env(), timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


def ask(site: Site, count: int, name: str = QNAME) -> None:
    for _ in range(count):
        query(site.port, name)


def test_nothing_listens_unless_http_listen_is_set(site: Site) -> None:
    port = free_port()
    daemonize(site)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    listening = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=False).stdout
    pid = int(site.pidfile.read_text())
    ours = [line for line in listening.splitlines() if f"pid={pid}," in line]
    assert len(ours) == 1 and f":{site.port} " in ours[0]  # the DNS TCP socket, nothing else


def test_metrics_and_json_equal_gdnsdctl_stats_at_the_same_moment(site: Site) -> None:
    port = http_site(site)
    daemonize(site)
    ask(site, 30)
    ask(site, 7, "nothing.example.com")
    ask(site, 3, "www.example.net")  # not ours: REFUSED
    for _ in range(20):  # nothing is asked meanwhile, but uptime may tick between the two reads
        found = metrics(port)
        stats = gdnsdctl_stats(site)
        if stats["uptime"] == found[("gdnsd_uptime_seconds", ())]:
            break
    assert stats["uptime"] == found[("gdnsd_uptime_seconds", ())]
    assert as_stats(found) == {group: stats[group] for group in ("stats", "udp", "tcp")}
    assert stats["stats"]["noerror"] == 30 and stats["stats"]["nxdomain"] == 7 and stats["stats"]["refused"] == 3
    assert found[("gdnsd_worker_processes", ())] == 1  # udp_threads 2: both sockets' counts are in
    status, headers, body = fetch(port, "/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    from_json = json.loads(body)
    assert {k: v for k, v in from_json.items() if k != "uptime"} == {k: v for k, v in gdnsdctl_stats(site).items() if k != "uptime"}


def test_counters_and_history_carry_across_reloads_and_replaces(site: Site) -> None:
    port = http_site(site)
    first = daemonize(site)
    ask(site, 20)
    before = metrics(port)
    site.zone_file.write_text("garbage\n")
    assert gdnsdctl(site, "reload-zones").returncode != 0
    site.zone_file.write_text(zone_text().replace("hostmaster 1 ", "hostmaster 2 "))
    assert gdnsdctl(site, "reload-zones").returncode == 0
    result = gdnsd(site, "replace")
    assert result.returncode == 0, result.stderr
    second = int(site.pidfile.read_text())
    assert second != first and wait_for(lambda: not alive(first), 10.0)
    ask(site, 5)
    after = metrics(port)
    noerror = ("gdnsd_queries_total", (("rcode", "noerror"),))
    assert after[noerror] == before[noerror] + 5 == 25
    assert after[("gdnsd_reloads_total", ())] == 2 and after[("gdnsd_reload_failures_total", ())] == 1
    assert after[("gdnsd_replaces_total", ())] == 1 and after[("gdnsd_generation", ())] == 2
    assert after[("gdnsd_zone_serial", (("zone", "example.com."),))] == 2
    assert abs(after[("gdnsd_start_time_seconds", ())] - before[("gdnsd_start_time_seconds", ())]) < 0.1
    assert after[("process_start_time_seconds", ())] > before[("process_start_time_seconds", ())]
    _, _, page = fetch(port, "/")
    assert page.count(b'<td class="failed">failed</td>') == 1 and page.count(b'<td class="ok">ok</td>') == 2


def test_a_failed_replace_is_counted_by_the_daemon_that_serves_on(site: Site) -> None:
    port = http_site(site)
    old = daemonize(site)
    crashing = dict(env(), PYGDNSD_TEST_CRASH_AT="after-fds")
    result = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "replace"],
        capture_output=True, text=True, env=crashing, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert wait_for(lambda: metrics(port)[("gdnsd_replace_failures_total", ())] == 1, 10.0)
    found = metrics(port)
    assert found[("gdnsd_replaces_total", ())] == 1 and found[("gdnsd_generation", ())] == 1
    assert found[("gdnsd_replace_last_success", ())] == 0
    assert int(site.pidfile.read_text()) == old and a_records(query(site.port, QNAME)) == ["192.0.2.10"]


def test_bad_slow_and_a_thousand_clients_leave_dns_answering_and_memory_bounded(site: Site) -> None:
    port = http_site(site, extra="  max_http_clients => 64\n  http_timeout => 3\n")
    pid = daemonize(site)
    fetch(port, "/")
    baseline = resident_bytes(pid)
    crowd: list[socket.socket] = []
    try:
        for number in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            crowd.append(sock)
            if number % 100 == 0:
                assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]
        for number, sock in enumerate(crowd):  # a third slow, a third huge, a third garbage
            try:
                if number % 3 == 0:
                    sock.send(b"GET / HTTP/1.1\r\nX: ")
                elif number % 3 == 1:
                    sock.send(b"GET / HTTP/1.1\r\nX: " + b"a" * 60000)
                else:
                    sock.send(b"\x16\x03\x01\x00\xff" * 200)
            except OSError:
                pass  # refused or not yet connected: the point is the load
        began = time.monotonic()
        answered = 0
        while time.monotonic() - began < 3.0:
            answered += a_records(query(site.port, QNAME)) == ["192.0.2.10"]
        assert answered > 30
        status, _, _ = fetch(port, "/metrics", timeout=15)
        assert status == 200
    finally:
        for sock in crowd:
            sock.close()
    assert resident_bytes(pid) - baseline < 40 << 20
    assert fetch(port, "/metrics")[0] == 200 and alive(pid)


def test_http_allow_refuses_other_networks(site: Site) -> None:
    port = http_site(site, extra="  http_allow => [ 127.0.0.2/32 ]\n")
    daemonize(site)
    status, _, body = fetch(port, "/metrics", source="127.0.0.1")
    assert status == 403 and b"http_allow" in body
    assert fetch(port, "/metrics", source="127.0.0.2")[0] == 200
