"""A real Prometheus scrapes pygdnsd every second through 10 replaces: every scrape succeeds, no counter resets.

Debian's ``prometheus`` runs directly (no service) with a config and data dir
of the test's own, on a free loopback port; the test asks its HTTP API. The
same check across a stop and start shows resets, so it can fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port
from daemon_support import Site, alive, daemonize, gdnsd, wait_for
from status_support import FastScraper, QueryLoad, http_site, metrics

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
REPLACES = 10

pytestmark = pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="Debian's prometheus is not installed (dev/bootstrap)")


@dataclass
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]

    def query(self, expression: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]

    def value(self, expression: str) -> float:
        result = self.query(expression)
        assert len(result) == 1, (expression, result)
        return float(result[0]["value"][1])  # type: ignore[index]

    def scrapes_of(self, target: int) -> float:
        result = self.query(f'count_over_time(up{{instance="127.0.0.1:{target}"}}[10m])')
        return float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[object]:
    started: list[Prometheus] = []

    def start(target: int) -> Prometheus:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: pygdnsd\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        server = Prometheus(port, process)
        started.append(server)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        assert wait_for(ready, 60.0), (tmp_path / "prometheus.log").read_text()
        return server

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


def settle(prom: Prometheus, target: int, scrapes: float) -> None:
    """Wait until Prometheus holds at least ``scrapes`` scrapes of ``target``."""
    assert wait_for(lambda: prom.scrapes_of(target) >= scrapes, 60.0), prom.scrapes_of(target)


def test_scrapes_every_second_through_ten_replaces_see_no_reset(site: Site, prometheus_for: object) -> None:
    target = http_site(site)  # udp_threads 2: a worker process's counts are in the totals too
    daemonize(site)
    prom = prometheus_for(target)  # type: ignore[operator]
    # Beside Prometheus's once a second, a scraper as fast as it gets answers: it would
    # catch a moment of a replace when a daemon answers with less than was answered before.
    with QueryLoad(site.port, qps=200) as load, FastScraper(target) as fast:
        settle(prom, target, 3)
        began = time.monotonic()
        pids = {int(site.pidfile.read_text())}
        for _ in range(REPLACES):
            before = prom.scrapes_of(target)
            result = gdnsd(site, "replace")
            assert result.returncode == 0, result.stderr
            pids.add(int(site.pidfile.read_text()))
            settle(prom, target, before + 2)  # scrapes between replaces, not only across them
        settle(prom, target, prom.scrapes_of(target) + 2)
        window = int(time.monotonic() - began) + 5
    assert len(pids) == REPLACES + 1 and load.answered > 0
    assert fast.failures == [] and fast.decreases == [] and fast.scrapes > window * 5
    selector = f'instance="127.0.0.1:{target}"'
    # Every scrape of the whole run succeeded, one a second or so.
    assert prom.value(f"min_over_time(up{{{selector}}}[{window}s])") == 1
    assert prom.value(f"count_over_time(up{{{selector}}}[{window}s])") >= window * 0.8
    # ... and no counter went back, while the queries kept them moving.
    for counter in ("gdnsd_queries_total", "gdnsd_transport_reqs_total", "gdnsd_query_attributes_total"):
        assert prom.value(f"sum(resets({counter}{{{selector}}}[{window}s]))") == 0, counter
    assert prom.value(f'increase(gdnsd_queries_total{{{selector},rcode="noerror"}}[{window}s])') > 100 * window * 0.5
    assert prom.value(f"max_over_time(gdnsd_generation{{{selector}}}[1m])") == REPLACES + 1
    assert metrics(target)[("gdnsd_replaces_total", ())] == REPLACES


def test_the_same_check_sees_a_restart_reset_the_counters(site: Site, prometheus_for: object) -> None:
    target = http_site(site)
    first = daemonize(site)
    prom = prometheus_for(target)  # type: ignore[operator]
    with QueryLoad(site.port, qps=200):
        settle(prom, target, 4)
        began = time.monotonic()
        stopped = gdnsd(site, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert wait_for(lambda: not alive(first), 10.0)
        daemonize(site)
        settle(prom, target, prom.scrapes_of(target) + 4)
        window = int(time.monotonic() - began) + 5
    selector = f'instance="127.0.0.1:{target}"'
    assert prom.value(f"sum(resets(gdnsd_queries_total{{{selector}}}[{window}s]))") > 0
