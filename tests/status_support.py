"""Shared by the status listener's daemon tests: a config with http_listen, fetching, reading /metrics."""

from __future__ import annotations

import http.client
import json
import subprocess
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
