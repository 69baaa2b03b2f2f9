"""status.metrics, page, chart, timeline and rate_ring, from a made-up daemon (a StatusSource)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from prometheus_client.parser import text_string_to_metric_families

from pygdnsd.control import json_answers
from pygdnsd.engine.stats import DNS_COUNTERS, OUTCOME_COUNTERS, TCP_COUNTERS, UDP_COUNTERS, Stats
from pygdnsd.monitoring.monitor import StateRow
from pygdnsd.status import chart, metrics, page
from pygdnsd.status.endpoints import Endpoints
from pygdnsd.status.http import Request
from pygdnsd.status.rate_ring import MAX_SAMPLES, SAMPLE_SECONDS, RateRing
from pygdnsd.status.snapshot import collect
from pygdnsd.status.timeline import RELOAD, REPLACE, Event, Timeline, TimelineView
from pygdnsd.status.zone_facts import ZoneFacts


@dataclass
class FakeDaemon:
    stats: Stats = field(default_factory=Stats)
    rows: list[StateRow] = field(default_factory=list)
    zones: list[ZoneFacts] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)

    def current_stats(self) -> Stats:
        copy = Stats()
        copy.absorb(self.stats.snapshot())
        return copy

    def uptime(self) -> int:
        return 4242

    def started_wall(self) -> float:
        return time.time() - 4242

    def state_rows(self) -> Sequence[StateRow]:
        return self.rows

    def zone_facts(self) -> Sequence[ZoneFacts]:
        return self.zones

    def worker_pids(self) -> Sequence[int]:
        return [os.getpid()]

    def timeline_view(self) -> TimelineView:
        return self.timeline.view()


def busy_daemon() -> FakeDaemon:
    daemon = FakeDaemon()
    for number, group in enumerate((daemon.stats.dns, daemon.stats.udp, daemon.stats.tcp)):
        for position, name in enumerate(group.values):
            group.bump(name, 1000 * number + position + 1)
    daemon.rows = [
        StateRow("192.0.2.1/up_check", "UP", "UP"),
        StateRow("192.0.2.2/up_check", "DOWN!", "UP"),
        StateRow("metafo/www/dc1", "NA", "NA"),
    ]
    daemon.zones = [ZoneFacts("example.com.", 2024010101, 12, 1.7e9)]
    daemon.timeline.record(Event(RELOAD, 1.7e9, 0.25, False, "zone example.com: syntax error"))
    daemon.timeline.record(Event(REPLACE, 1.7e9 + 5, 1.5, True, "PID 7 serves"))
    return daemon


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_every_gdnsdctl_stats_counter_is_a_sample_with_its_value() -> None:
    daemon = busy_daemon()
    found = samples(metrics.render(collect(daemon)))
    groups = daemon.stats.snapshot()
    for name in DNS_COUNTERS:
        if name in OUTCOME_COUNTERS:
            key = ("gdnsd_queries_total", (("rcode", name),))
        else:
            key = ("gdnsd_query_attributes_total", (("attribute", name),))
        assert found.pop(key) == groups["stats"][name]
    for transport, names in (("udp", UDP_COUNTERS), ("tcp", TCP_COUNTERS)):
        for name in names:
            assert found.pop((f"gdnsd_transport_{name}_total", (("transport", transport),))) == groups[transport][name]
    assert not [key for key in found if key[0].startswith(("gdnsd_queries", "gdnsd_query_", "gdnsd_transport_"))]
    assert found[("gdnsd_uptime_seconds", ())] == 4242


def test_states_zones_history_and_process_facts() -> None:
    found = samples(metrics.render(collect(busy_daemon())))
    up = (("resource", "192.0.2.1"), ("service_type", "up_check"))
    forced = (("resource", "192.0.2.2"), ("service_type", "up_check"))
    assert found[("gdnsd_service_state", up)] == 1 and found[("gdnsd_service_real_state", up)] == 1
    assert found[("gdnsd_service_state", forced)] == 0 and found[("gdnsd_service_real_state", forced)] == 1
    assert found[("gdnsd_service_admin_forced", forced)] == 1 and found[("gdnsd_service_admin_forced", up)] == 0
    virtual = (("resource", "metafo/www"), ("service_type", "dc1"))
    assert ("gdnsd_service_state", virtual) not in found  # NA: no value to give
    zone = (("zone", "example.com."),)
    assert found[("gdnsd_zone_serial", zone)] == 2024010101 and found[("gdnsd_zone_records", zone)] == 12
    assert found[("gdnsd_reloads_total", ())] == 1 and found[("gdnsd_reload_failures_total", ())] == 1
    assert found[("gdnsd_reload_last_success", ())] == 0
    assert found[("gdnsd_replaces_total", ())] == 1 and found[("gdnsd_replace_failures_total", ())] == 0
    assert found[("gdnsd_replace_last_duration_seconds", ())] == 1.5 and found[("gdnsd_generation", ())] == 2
    assert found[("gdnsd_worker_processes", ())] == 1
    assert found[("process_resident_memory_bytes", ())] > 1 << 20
    assert abs(found[("process_start_time_seconds", ())] - time.time()) < 24 * 3600 * 365


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("src", "href") and value and tag != "a":
                self.sources.append(value)


def test_the_page_holds_the_chart_and_tables_and_nothing_from_elsewhere() -> None:
    daemon = busy_daemon()
    ring = RateRing()
    now = time.time()
    for step in range(MAX_SAMPLES + 20):
        at = now - (MAX_SAMPLES + 20 - step) * SAMPLE_SECONDS
        ring.add(at, {name: step * (index + 1) * 100 for index, name in enumerate(OUTCOME_COUNTERS)})
    answer = Endpoints(daemon, ring).answer(Request("GET", "/", "HTTP/1.1"))
    assert answer.content_type.startswith("text/html")
    assert ("Content-Security-Policy", answer.headers[0][1]) in answer.headers and "default-src 'none'" in answer.headers[0][1]
    parsed = Tags()
    parsed.feed(answer.body.decode())
    assert {"qps-chart", "state-table", "zone-table", "history-table", "counters"} <= parsed.ids
    assert "script" not in parsed.tags and parsed.sources == []
    assert len(answer.body) < 100_000
    text = answer.body.decode()
    assert "DOWN!" in text and "zone example.com: syntax error" in text and "192.0.2.1/up_check" in text
    assert text.count('class="band"') == len(OUTCOME_COUNTERS)


def test_a_page_stays_small_with_many_zones_and_services() -> None:
    daemon = busy_daemon()
    daemon.rows = [StateRow(f"192.0.2.{i % 250}/check{i}", "UP", "UP") for i in range(5000)]
    daemon.zones = [ZoneFacts(f"zone{i}.example.", i, i, 1.7e9) for i in range(5000)]
    for i in range(500):
        daemon.timeline.observe_states({"a/b": "UP" if i % 2 else "DOWN"}, 1.7e9 + i)
        daemon.timeline.record(Event(RELOAD, 1.7e9 + i, 0.1, True, "x" * 100))
    body = page.render(collect(daemon), [])
    assert len(body) < 100_000
    assert b"200 of 5000 shown" in body and b"no samples yet" in body


def test_the_chart_scales_to_a_round_number_and_skips_silent_rcodes() -> None:
    assert [chart.nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 180, 2001)] == [1, 0.5, 1, 10, 20, 200, 5000]
    ring = RateRing()
    ring.add(1000.0, {"noerror": 0, "refused": 0})
    ring.add(1010.0, {"noerror": 500, "refused": 10})
    rates = ring.rates(1010.0)
    assert [r.per_second[:2] for r in rates] == [(50.0, 1.0)]
    drawn = chart.svg(rates, 1010.0)
    assert drawn.count('class="band"') == 2 and 'data-rcode="refused"' in drawn and 'data-rcode="nxdomain"' not in drawn


def test_rates_never_go_negative_and_the_ring_keeps_an_hour() -> None:
    ring = RateRing()
    ring.add(0.0, {"noerror": 100})
    ring.add(10.0, {"noerror": 50})  # counters that went back (a restart): shown as no traffic
    ring.add(5.0, {"noerror": 500})  # the clock went back: ignored
    assert [r.per_second[0] for r in ring.rates(10.0)] == [0.0]
    last = MAX_SAMPLES + 9
    for step in range(2, last + 1):
        ring.add(step * SAMPLE_SECONDS, {"noerror": step})
    rates = ring.rates(last * SAMPLE_SECONDS)
    assert len(rates) == MAX_SAMPLES - 1  # an hour of 10 s steps: the oldest samples fell out
    assert rates[0].at == (last - MAX_SAMPLES + 2) * SAMPLE_SECONDS and rates[-1].per_second[0] == 0.1


def test_timeline_and_ring_survive_a_hand_off_and_refuse_garbage() -> None:
    timeline = busy_daemon().timeline
    timeline.observe_states({"a/b": "UP"}, 1.0)
    timeline.observe_states({"a/b": "DOWN"}, 2.0)
    again = Timeline.from_handoff(timeline.to_handoff())
    assert again.view() == timeline.view()
    again.observe_states({"a/b": "UP"}, 3.0)  # the last known state came along: a change is seen
    assert [t.after for t in again.view().transitions] == ["UP", "DOWN"]
    for garbage in (None, [], {"generation": 0}, {**timeline.to_handoff(), "events": [["boom"]]}):
        assert Timeline.from_handoff(garbage).view() == Timeline().view()
    ring = RateRing()
    ring.add(0.0, {"noerror": 1, "dropped": 5})
    ring.add(10.0, {"noerror": 11, "dropped": 6})
    handed = ring.to_handoff()
    assert RateRing.from_handoff(handed).rates(10.0) == ring.rates(10.0)
    handed["names"] = list(reversed(handed["names"]))  # matched by name, not position
    handed["samples"] = [[row[0], *reversed(row[1:])] for row in handed["samples"]]
    assert RateRing.from_handoff(handed).rates(10.0) == ring.rates(10.0)
    for garbage in (None, {"names": ["noerror"], "samples": [[1.0]]}, {"names": "x", "samples": []}):
        assert RateRing.from_handoff(garbage).rates(10.0) == []


def test_json_is_gdnsdctl_stats_json() -> None:
    daemon = busy_daemon()
    answer = Endpoints(daemon, RateRing()).answer(Request("GET", "/json", "HTTP/1.1"))
    assert answer.body == json_answers.stats_json(daemon.stats, 4242)
