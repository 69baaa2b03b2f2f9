"""Shared by the status listener's daemon tests: a config with http_listen, fetching, reading /metrics."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import subprocess
import threading
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, pygdnsd_python
from daemon_support import Site, env, zone_text

QNAME = "www.example.com"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def write_site(site: Site, http_port: int, *, workers: int = 2, extra: str = "") -> None:
    """A config serving the status listener on 127.0.0.1:``http_port``, with ``workers`` - 1 worker processes."""
    (site.cfgdir / "zones").mkdir(parents=True, exist_ok=True)
    (site.cfgdir / "config").write_text(
        "options => {\n"
        "  listen => [ 127.0.0.1 ]\n"
        f"  dns_port => {site.port}\n"
        f"  run_dir => {site.run_dir}\n"
        f"  state_dir => {site.root / 'state'}\n"
        f"  udp_threads => {workers}\n"
        "  tcp_threads => 1\n"
        f"  http_listen => 127.0.0.1:{http_port}\n"
        f"{extra}"
        "}\n"
    )
    site.zone_file.write_text(zone_text())


def http_site(site: Site, **kwargs: Any) -> int:
    port = free_port()
    write_site(site, port, **kwargs)
    return port


def fetch(port: int, path: str, timeout: float = 10.0, source: str | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def samples(body: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metrics(port: int) -> Samples:
    status, _, body = fetch(port, "/metrics")
    assert status == 200
    return samples(body)


def gdnsdctl_stats(site: Site) -> dict[str, Any]:
    result = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-c", str(site.cfgdir), "stats"],
        capture_output=True, text=True, env=env(), timeout=60, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def as_stats(found: Samples) -> dict[str, dict[str, int]]:
    """The counters of a /metrics scrape, grouped and named as gdnsdctl stats has them."""
    out: dict[str, dict[str, int]] = {"stats": {}, "udp": {}, "tcp": {}}
    for (name, labels), value in found.items():
        label = dict(labels)
        if name in ("gdnsd_queries_total", "gdnsd_query_attributes_total"):
            out["stats"][label.get("rcode") or label["attribute"]] = int(value)
        elif name.startswith("gdnsd_transport_") and name.endswith("_total"):
            out[label["transport"]][name[len("gdnsd_transport_") : -len("_total")]] = int(value)
    return out


class QueryLoad:
    """UDP queries at a steady rate on a thread, until stopped (and never past ``limit`` seconds)."""

    def __init__(self, port: int, qps: float = 200.0, limit: float = 300.0) -> None:
        self.port = port
        self.interval = 1.0 / qps
        self.limit = limit
        self.sent = 0
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="query-load", daemon=True)

    def __enter__(self) -> QueryLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        packet = question_packet(QNAME)
        began = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            while not self._stop.wait(self.interval) and time.monotonic() - began < self.limit:
                with contextlib.suppress(OSError):
                    sock.sendto(packet, ("127.0.0.1", self.port))
                    self.sent += 1
                with contextlib.suppress(OSError):
                    while sock.recv(4096):
                        self.answered += 1


def question_packet(name: str) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 1, 1)


class FastScraper:
    """/metrics as fast as it answers, on a thread: every failure, and every counter that went back."""

    def __init__(self, port: int, pause: float = 0.01, limit: float = 300.0) -> None:
        self.port = port
        self.pause = pause
        self.limit = limit
        self.scrapes = 0
        self.failures: list[str] = []
        self.decreases: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fast-scraper", daemon=True)

    def __enter__(self) -> FastScraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        last: Samples = {}
        began = time.monotonic()
        while not self._stop.wait(self.pause) and time.monotonic() - began < self.limit:
            try:
                status, _, body = fetch(self.port, "/metrics", timeout=5.0)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(f"status {status}")
                continue
            self.scrapes += 1
            found = samples(body)
            for key, value in found.items():
                if key[0].endswith("_total") and value < last.get(key, 0.0):
                    self.decreases.append(f"{key}: {last[key]} -> {value}")
            last = found
