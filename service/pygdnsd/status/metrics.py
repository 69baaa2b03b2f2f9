"""``/metrics``: a Snapshot in Prometheus's text exposition format, written by its client library.

Every counter of ``gdnsdctl stats`` is here, named after gdnsd's names
(``engine.stats`` is the one list of them):

* ``gdnsd_queries_total{rcode}``: how queries ended (``stats``' noerror ...
  dropped; they add up to every query);
* ``gdnsd_query_attributes_total{attribute}``: the rest of ``stats`` (v6,
  edns, edns_do, edns_clientsub, the cookie counters);
* ``gdnsd_transport_<counter>_total{transport}``: the ``udp`` and ``tcp``
  groups, one family per counter name (``gdnsd_transport_reqs_total`` has
  both transports).

They are totals of the whole service: a reload restarts no counter, and a
replace hands the old daemon's final counts to the new one before the new
one answers a scrape, so Prometheus never sees a reset. Gauges describe the
moment (monitored states, zones, this process); the reload and replace
counts and durations come from the ``Timeline``, carried across replaces too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from pygdnsd.control.protocol import COMPAT_VERSION
from pygdnsd.engine.stats import OUTCOME_COUNTERS
from pygdnsd.status.snapshot import Snapshot
from pygdnsd.status.timeline import RELOAD, REPLACE

CONTENT_TYPE = CONTENT_TYPE_LATEST
DNS_GROUP = "stats"  # gdnsdctl stats' group of engine counters; the others are transports


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        yield from _counters(snapshot)
        yield from _service_states(snapshot)
        yield from _zones(snapshot)
        yield from _timeline(snapshot)
        yield from _process(snapshot)


def _counters(snapshot: Snapshot) -> Iterator[Metric]:
    groups = snapshot.stats.snapshot()
    queries = CounterMetricFamily(
        "gdnsd_queries", "Queries by how they ended (gdnsdctl stats: noerror ... dropped).", labels=["rcode"]
    )
    attributes = CounterMetricFamily(
        "gdnsd_query_attributes",
        "Queries with each attribute (gdnsdctl stats: v6, edns, edns_do, edns_clientsub, cookies).",
        labels=["attribute"],
    )
    for name, value in groups[DNS_GROUP].items():
        if name in OUTCOME_COUNTERS:
            queries.add_metric([name], value)
        else:
            attributes.add_metric([name], value)
    yield queries
    yield attributes
    by_counter: dict[str, CounterMetricFamily] = {}
    for transport, counters in groups.items():
        if transport == DNS_GROUP:
            continue
        for name, value in counters.items():
            family = by_counter.get(name)
            if family is None:
                family = by_counter[name] = CounterMetricFamily(
                    f"gdnsd_transport_{name}", f"gdnsdctl stats' {name}, by transport.", labels=["transport"]
                )
            family.add_metric([transport], value)
    yield from by_counter.values()
    yield GaugeMetricFamily("gdnsd_uptime_seconds", "Seconds since the service started (replaces carry it on).", snapshot.uptime)
    yield GaugeMetricFamily(
        "gdnsd_start_time_seconds", "When the service started, in seconds since the epoch.", round(snapshot.started_at, 3)
    )


def _resource_labels(name: str) -> list[str]:
    resource, _, service_type = name.rpartition("/")
    return [resource, service_type] if resource else [name, ""]


def _service_states(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["resource", "service_type"]
    state = GaugeMetricFamily(
        "gdnsd_service_state", "Effective monitored state, as DNS answers use it: 1 UP, 0 DOWN.", labels=labels
    )
    real = GaugeMetricFamily(
        "gdnsd_service_real_state", "Monitored state as the checks found it: 1 UP, 0 DOWN.", labels=labels
    )
    forced = GaugeMetricFamily(
        "gdnsd_service_admin_forced", "1 when admin_state overrides the monitored state.", labels=labels
    )
    for row in snapshot.services:
        label_values = _resource_labels(row.name)
        if row.state != "NA":
            state.add_metric(label_values, 0 if row.state.startswith("DOWN") else 1)
        if row.real_state != "NA":
            real.add_metric(label_values, 0 if row.real_state == "DOWN" else 1)
        forced.add_metric(label_values, 1 if row.forced else 0)
    yield from (state, real, forced)


def _zones(snapshot: Snapshot) -> Iterator[Metric]:
    serial = GaugeMetricFamily("gdnsd_zone_serial", "The zone's SOA serial.", labels=["zone"])
    records = GaugeMetricFamily("gdnsd_zone_records", "Resource records in the zone.", labels=["zone"])
    loaded = GaugeMetricFamily(
        "gdnsd_zone_loaded_timestamp_seconds", "When the served zone data was loaded.", labels=["zone"]
    )
    for zone in snapshot.zones:
        serial.add_metric([zone.name], zone.serial)
        records.add_metric([zone.name], zone.records)
        loaded.add_metric([zone.name], round(zone.loaded_at, 3))
    yield from (serial, records, loaded)
    yield GaugeMetricFamily("gdnsd_zones", "Zones served.", len(snapshot.zones))


def _timeline(snapshot: Snapshot) -> Iterator[Metric]:
    view = snapshot.timeline
    for kind, plural in ((RELOAD, "reloads"), (REPLACE, "replaces")):
        totals = view.totals[kind]
        yield CounterMetricFamily(f"gdnsd_{plural}", f"Zone {plural if kind == RELOAD else 'daemon ' + plural} tried, failed ones included.", totals.attempts)
        yield CounterMetricFamily(f"gdnsd_{kind}_failures", f"{plural.capitalize()} that failed.", totals.failures)
        duration = GaugeMetricFamily(f"gdnsd_{kind}_last_duration_seconds", f"How long the last {kind} took.")
        success = GaugeMetricFamily(f"gdnsd_{kind}_last_success", f"1 if the last {kind} worked, 0 if it failed.")
        if totals.last_seconds is not None:
            duration.add_metric([], round(totals.last_seconds, 6))
        if totals.last_ok is not None:
            success.add_metric([], 1 if totals.last_ok else 0)
        yield from (duration, success)
    yield GaugeMetricFamily("gdnsd_generation", "Daemons this service has had: 1, plus one per replace.", view.generation)


def _process(snapshot: Snapshot) -> Iterator[Metric]:
    info = InfoMetricFamily("gdnsd_build", "pygdnsd's version and the gdnsd version it is compatible with.")
    info.add_metric([], {"version": snapshot.version, "gdnsd": ".".join(map(str, COMPAT_VERSION))})
    yield info
    yield GaugeMetricFamily(
        "process_start_time_seconds", "When this daemon process started, in seconds since the epoch.", round(snapshot.process_started, 2)
    )
    yield GaugeMetricFamily("process_resident_memory_bytes", "This daemon process's resident memory.", snapshot.resident_bytes)
    yield GaugeMetricFamily("gdnsd_worker_processes", "Worker processes serving beside the daemon.", len(snapshot.worker_pids))
    yield GaugeMetricFamily(
        "gdnsd_workers_resident_memory_bytes", "The worker processes' resident memory, together.", snapshot.workers_resident_bytes
    )
