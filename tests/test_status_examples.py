"""examples/prometheus and examples/grafana: valid for their tools, firing when they should, naming real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from pygdnsd.status import metrics
from pygdnsd.status.snapshot import collect
from test_status_render import busy_daemon

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS_DIR = REPO / "examples" / "prometheus"
DASHBOARD = REPO / "examples" / "grafana" / "gdnsd-dashboard.json"
METRIC_NAME = re.compile(r"\b((?:gdnsd|process)_[a-z_]+|up)\b(?!\s*\()")

needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="Debian's prometheus (promtool) is not installed")


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(dashboard))


def exposed_names() -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    body = metrics.render(collect(busy_daemon())).decode()
    return {sample.name for family in text_string_to_metric_families(body) for sample in family.samples} | {"up"}


@needs_promtool
def test_the_alert_rules_and_scrape_config_check_and_fire_as_their_tests_say() -> None:
    for args in (("check", "rules", "gdnsd-alerts.yml"), ("test", "rules", "gdnsd-alerts.test.yml"), ("check", "config", "prometheus.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    alerts = (PROMETHEUS_DIR / "gdnsd-alerts.yml").read_text()
    assert {"GdnsdReplaceFailed", "GdnsdReloadFailed", "GdnsdMonitorDown"} <= set(re.findall(r"alert: (\w+)", alerts))


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 15
    rules = []
    for number, expression in enumerate(expressions):
        if expression.startswith("label_values("):  # Grafana's, not PromQL: check its selector
            expression = expression[len("label_values(") : expression.rindex(",")]
        concrete = expression.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$job", ".*")
        rules.append({"record": f"dashboard_query_{number}", "expr": concrete})
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_examples_name_only_metrics_pygdnsd_exposes() -> None:
    exposed = exposed_names()
    texts = [*dashboard_expressions(), (PROMETHEUS_DIR / "gdnsd-alerts.yml").read_text()]
    named = {name for text in texts for name in METRIC_NAME.findall(text)}
    assert named - exposed == set()
    assert {"gdnsd_queries_total", "gdnsd_service_state", "gdnsd_replace_last_success"} <= named


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"] and set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
