"""``/``: the status page for a person, as one self-contained HTML document.

No script and nothing fetched from elsewhere: the style is inline, the chart
is inline SVG (``chart``), and a Content-Security-Policy header (``endpoints``)
makes the browser refuse anything else. It refreshes itself every 10 s (a
meta refresh). Long tables are cut at ``MAX_ROWS`` with a note, so the page
stays well under 100 kB whatever the config; ``/metrics`` and ``/json`` have
everything.

The layout is one column on a phone and flows into a grid on wider
screens; wide tables scroll inside their box rather than widening the page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from pygdnsd.engine.stats import OUTCOME_COUNTERS
from pygdnsd.status import chart
from pygdnsd.status.rate_ring import Rate
from pygdnsd.status.snapshot import Snapshot
from pygdnsd.status.timeline import RELOAD, REPLACE

MAX_ROWS = 200
MAX_TRANSITIONS = 20
REFRESH_SECONDS = 10
GROUP_TITLES = {"stats": "DNS", "udp": "UDP", "tcp": "TCP"}

STYLE = """
:root { color-scheme: light; --line: #ddd; --muted: #666; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1a1a1a; background: #f4f5f7; }
header { background: #263238; color: #fff; padding: 12px 16px; }
header h1 { font-size: 20px; margin: 0 0 4px; }
header p { margin: 0; color: #cfd8dc; font-size: 13px; }
main { max-width: 1240px; margin: 0 auto; padding: 12px; display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 360px), 1fr)); }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 10px 0 4px; color: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.counters { display: grid; gap: 8px 24px; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); align-items: start; }
#qps-chart { display: block; max-height: 340px; }
#qps-chart .axis { font-size: 11px; fill: #444; }
@media (max-width: 700px) { #qps-chart .axis { font-size: 20px; } }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 6px 0 0; padding: 0; list-style: none; font-size: 13px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.UP { color: #2e7d32; font-weight: 600; } .DOWN { color: #c62828; font-weight: 600; } .NA { color: var(--muted); }
.ok { color: #2e7d32; } .failed { color: #c62828; font-weight: 600; }
.note, footer { color: var(--muted); font-size: 12px; }
footer { text-align: center; padding: 8px 0 16px; }
"""


def _utc(at: float | None) -> str:
    if at is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


def _mib(count: int) -> str:
    return f"{count / 1048576:.1f} MiB"


def _state_class(text: str) -> str:
    return text.rstrip("!") if text.rstrip("!") in ("UP", "DOWN") else "NA"


def _cut_note(shown: int, total: int, where: str) -> str:
    if total <= shown:
        return ""
    return f'<p class="note">{shown} of {total} shown; {where} has them all.</p>'


def _traffic(rates: Sequence[Rate], now: float) -> str:
    latest = rates[-1].per_second if rates else (0.0,) * len(OUTCOME_COUNTERS)
    legend = "".join(
        f'<li><span class="swatch" style="background:{chart.COLOURS[name]}"></span>{escape(name)} '
        f'<span class="num">{value:.1f}/s</span></li>'
        for name, value in zip(OUTCOME_COUNTERS, latest, strict=True)
    )
    return (
        '<section class="wide" id="traffic"><h2>Queries per second by rcode, the last hour</h2>'
        f'{chart.svg(rates, now)}<ul class="legend">{legend}</ul></section>'
    )


def _counters(snapshot: Snapshot) -> str:
    tables = []
    for group, counters in snapshot.stats.snapshot().items():
        rows = "".join(f'<tr><td>{escape(name)}</td><td class="num">{value:,}</td></tr>' for name, value in counters.items())
        title = GROUP_TITLES.get(group, group)
        tables.append(f'<div><h3>{escape(title)}</h3><table class="counters-{escape(group)}">{rows}</table></div>')
    return (
        '<section class="wide" id="counters"><h2>Counters</h2>'
        '<p class="note">Totals since the service started, across every reload and replace.</p>'
        f'<div class="counters">{"".join(tables)}</div></section>'
    )


def _services(snapshot: Snapshot) -> str:
    services = snapshot.services
    if services:
        rows = "".join(
            f'<tr><td>{escape(row.name)}</td><td class="{_state_class(row.state)}">{escape(row.state)}</td>'
            f'<td class="{_state_class(row.real_state)}">{escape(row.real_state)}</td></tr>'
            for row in services[:MAX_ROWS]
        )
        table = (
            '<div class="scroll"><table id="state-table"><thead><tr><th>Service</th><th>State</th>'
            f"<th>Real state</th></tr></thead><tbody>{rows}</tbody></table></div>"
            + _cut_note(MAX_ROWS, len(services), "/metrics")
            + '<p class="note">A state ending in ! is forced by admin_state.</p>'
        )
    else:
        table = (
            '<table id="state-table"><tbody><tr><td class="NA">No monitored services.</td></tr></tbody></table>'
        )
    changes = snapshot.timeline.transitions[:MAX_TRANSITIONS]
    if changes:
        items = "".join(
            f'<tr><td>{_utc(t.at)}</td><td>{escape(t.name)}</td><td class="{_state_class(t.before)}">{escape(t.before)}</td>'
            f'<td class="{_state_class(t.after)}">{escape(t.after)}</td></tr>'
            for t in changes
        )
        history = (
            '<h3>Recent changes</h3><div class="scroll"><table id="state-history"><thead><tr><th>When</th>'
            f"<th>Service</th><th>From</th><th>To</th></tr></thead><tbody>{items}</tbody></table></div>"
        )
    else:
        history = '<p class="note" id="state-history">No state changes since the service started.</p>'
    return f'<section id="services"><h2>Monitored services</h2>{table}{history}</section>'


def _zones(snapshot: Snapshot) -> str:
    zones = snapshot.zones
    rows = "".join(
        f'<tr><td>{escape(zone.name)}</td><td class="num">{zone.serial}</td>'
        f'<td class="num">{zone.records:,}</td><td>{_utc(zone.loaded_at)}</td></tr>'
        for zone in zones[:MAX_ROWS]
    )
    if not zones:
        rows = '<tr><td colspan="4" class="NA">No zones loaded.</td></tr>'
    return (
        f'<section id="zones"><h2>Zones ({len(zones)})</h2><div class="scroll"><table id="zone-table">'
        '<thead><tr><th>Zone</th><th class="num">Serial</th><th class="num">Records</th><th>Loaded</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>{_cut_note(MAX_ROWS, len(zones), '/metrics')}</section>"
    )


def _history(snapshot: Snapshot) -> str:
    view = snapshot.timeline
    summary = []
    for kind, title in ((RELOAD, "Zone reloads"), (REPLACE, "Replaces")):
        totals = view.totals[kind]
        summary.append(
            f"<tr><td>{title}</td><td class=\"num\">{totals.attempts}</td>"
            f'<td class="num">{totals.failures}</td><td class="num">{_duration(totals.last_seconds)}</td></tr>'
        )
    events = "".join(
        f'<tr><td>{_utc(e.at)}</td><td>{e.kind}</td><td class="{"ok" if e.ok else "failed"}">{"ok" if e.ok else "failed"}</td>'
        f'<td class="num">{_duration(e.seconds)}</td><td>{escape(e.detail)}</td></tr>'
        for e in view.events
    )
    if not events:
        events = '<tr><td colspan="5" class="NA">No reload or replace since the service started.</td></tr>'
    return (
        '<section class="wide" id="history"><h2>Reloads and replaces</h2><div class="scroll"><table id="history-totals">'
        '<thead><tr><th></th><th class="num">Total</th><th class="num">Failed</th><th class="num">Last took</th></tr></thead>'
        f'<tbody>{"".join(summary)}</tbody></table></div>'
        '<h3>Recent</h3><div class="scroll"><table id="history-table"><thead><tr><th>When</th><th>What</th><th>Result</th>'
        f'<th class="num">Took</th><th>Detail</th></tr></thead><tbody>{events}</tbody></table></div></section>'
    )


def render(snapshot: Snapshot, rates: Sequence[Rate]) -> bytes:
    facts = (
        f"pygdnsd {escape(snapshot.version)} on {escape(snapshot.hostname)} &middot; PID {snapshot.pid} "
        f"&middot; up {_uptime(snapshot.uptime)} &middot; generation {snapshot.timeline.generation} "
        f"&middot; {len(snapshot.worker_pids)} worker process(es) &middot; "
        f"{_mib(snapshot.resident_bytes + snapshot.workers_resident_bytes)} resident"
    )
    body = "".join(
        (
            _traffic(rates, snapshot.taken_at),
            _services(snapshot),
            _zones(snapshot),
            _counters(snapshot),
            _history(snapshot),
        )
    )
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>pygdnsd status: {escape(snapshot.hostname)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>pygdnsd status</h1><p>{facts}</p><p>As of {_utc(snapshot.taken_at)}; "
        f"started {_utc(snapshot.started_at)}; this process since {_utc(snapshot.process_started)}.</p></header>"
        f"<main>{body}</main>"
        '<footer>Also: <a href="/metrics">/metrics</a> (Prometheus) &middot; <a href="/json">/json</a> '
        "(gdnsdctl stats)</footer></body></html>\n"
    )
    return document.encode("utf-8")
