"""bench/'s tables: the rows a run measures and how they are printed, ratios to gdnsd.

Every ratio is to gdnsd in the same run (``gdnsd_rows``); ``--runs N``
summarises them per case and server as best / median (``render_summary``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servers import GDNSD, Server


@dataclass(frozen=True, slots=True)
class Variant:
    """One server with the thread counts its config asks for."""

    server: Server
    udp_threads: int = 1
    tcp_threads: int = 1

    @property
    def threads(self) -> str:
        return f"{self.udp_threads}/{self.tcp_threads}"


@dataclass(slots=True)
class Row:
    case: str
    variant: Variant
    client: str
    run: int = 1
    qps: float | None = None
    cpu_us: float | None = None
    sys_share: float | None = None  # of cpu_us, the part spent in the kernel
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None  # p99.9: the tail the issue's target bounds at 3x gdnsd's
    mean_ms: float | None = None
    lost: int | None = None
    sent: int | None = None
    rcodes: str = ""
    rss_mb: float | None = None
    cores: float | None = None  # server CPU seconds per second of the run
    per_process: tuple[float, ...] = ()  # the same, per server process (pygdnsd's workers)
    note: str = ""


@dataclass(slots=True)
class LoadRow:
    case: str
    server: Server
    checkconf_s: float | None = None
    checkconf_rss: float | None = None
    start_s: float | None = None
    start_rss: float | None = None
    note: str = ""


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    loads: list[LoadRow] = field(default_factory=list)


def _fmt(value: float | int | None, spec: str) -> str:
    if value is None:
        return "-".rjust(int(spec.split(".")[0].rstrip("dfs") or 0))
    return format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"{value / base:.2f}x"


def render(report: Report) -> str:
    lines = [*render_traffic(report.rows), "", *render_summary(report.rows)] if report.rows else []
    scraped = render_scrape(report.rows)
    if scraped:
        lines += ["", *scraped]
    if report.loads:
        lines += ["", *render_loads(report.loads)]
    return "\n".join(lines).strip("\n")


def render_traffic(rows: Sequence[Row]) -> list[str]:
    lines = []
    head = (
        f"{'case':<9} {'run':>3} {'server':<8} {'udp/tcp':>7} {'qps':>9} {'qps/gd':>7} {'cpu us/q':>9} "
        f"{'cpu/gd':>7} {'sys':>4} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99/gd':>7} {'p99.9 ms':>8} "
        f"{'p99.9/gd':>8} {'lost':>7} "
        f"{'sent':>9} {'RSS MB':>7}  client"
    )
    lines += [head, "-" * len(head)]
    base = gdnsd_rows(rows)
    for r in rows:
        g = base.get((r.case, r.run))
        lines.append(
            f"{r.case:<9} {r.run:>3} {r.variant.server.name:<8} {r.variant.threads:>7} {_fmt(r.qps, '9.0f')} "
            f"{_ratio(r.qps, g.qps if g else None):>7} {_fmt(r.cpu_us, '9.2f')} "
            f"{_ratio(r.cpu_us, g.cpu_us if g else None):>7} "
            f"{_fmt(None if r.sys_share is None else 100 * r.sys_share, '3.0f')}% {_fmt(r.mean_ms, '8.3f')} "
            f"{_fmt(r.p50_ms, '7.3f')} {_fmt(r.p99_ms, '7.3f')} "
            f"{_ratio(r.p99_ms, g.p99_ms if g else None):>7} {_fmt(r.p999_ms, '8.3f')} "
            f"{_ratio(r.p999_ms, g.p999_ms if g else None):>8} {_fmt(r.lost, '7d')} "
            f"{_fmt(r.sent, '9d')} {_fmt(r.rss_mb, '7.1f')}  {r.client}"
            + (f"  [{r.note}]" if r.note else "")
        )
    # The same answers in kind from both servers, or the comparison means nothing.
    lines.append("")
    lines += [
        f"{r.case:<9} {r.run:>3} {r.variant.server.name:<8} {r.variant.threads:>7}  rcodes: {r.rcodes}" for r in rows
    ]
    # How many cores the server used while dnsperf ran (dnsperf's own run time, its
    # timeout tail included), and how they split over pygdnsd's processes.
    lines.append("")
    lines += [
        f"{r.case:<9} {r.run:>3} {r.variant.server.name:<8} {r.variant.threads:>7}"
        f"  server cores: {_fmt(r.cores, '.2f')}"
        f" (per process: {' + '.join(f'{c:.2f}' for c in r.per_process)})"
        for r in rows
    ]
    return lines


def gdnsd_rows(rows: Sequence[Row]) -> dict[tuple[str, int], Row]:
    """Each (case, run)'s first gdnsd row (1/1 unless ``--gdnsd-threads`` says otherwise): every ratio is to it."""
    base: dict[tuple[str, int], Row] = {}
    for r in rows:
        if r.variant.server is GDNSD:
            base.setdefault((r.case, r.run), r)
    return base


# The summary's ratios: (heading, the row's figure, whether higher is better). The
# best of a higher-is-better ratio is its largest (qps), of the others the smallest.
SUMMARY_RATIOS: tuple[tuple[str, Callable[[Row], float | None], bool], ...] = (
    ("qps/gd", lambda r: r.qps, True),
    ("cpu/gd", lambda r: r.cpu_us, False),
    ("p99/gd", lambda r: r.p99_ms, False),
    ("p99.9/gd", lambda r: r.p999_ms, False),
)


def render_summary(rows: Sequence[Row]) -> list[str]:
    """Per case and server, the ratios to gdnsd over every run: best and median.

    Ratios are taken within each run (the machine's load varies between
    runs far more than within one), then summarised.
    """
    base = gdnsd_rows(rows)
    ratios: dict[tuple[str, str, str], list[list[float]]] = {}
    for r in rows:
        g = base.get((r.case, r.run))
        if g is None or r is g:
            continue
        per_ratio = ratios.setdefault((r.case, r.variant.server.name, r.variant.threads), [[] for _ in SUMMARY_RATIOS])
        for values, (_, figure, _) in zip(per_ratio, SUMMARY_RATIOS, strict=True):
            mine, gdnsd = figure(r), figure(g)
            if mine is not None and gdnsd:
                values.append(mine / gdnsd)
    runs = len({r.run for r in rows})
    head = f"{'case':<9} {'server':<8} {'udp/tcp':>7}" + "".join(
        f" {heading + ' best':>13} {'median':>7}" for heading, _, _ in SUMMARY_RATIOS
    )
    lines = [f"Ratios to gdnsd in the same run, best / median of {runs} run(s):", head]
    for (case, server, threads), per_ratio in ratios.items():
        lines.append(
            f"{case:<9} {server:<8} {threads:>7}"
            + "".join(
                f" {_best(values, higher):>13} {_median(values):>7}"
                for values, (_, _, higher) in zip(per_ratio, SUMMARY_RATIOS, strict=True)
            )
        )
    return lines


def _best(values: list[float], higher_is_better: bool = False) -> str:
    if not values:
        return "-"
    return f"{(max(values) if higher_is_better else min(values)):.2f}x"


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x" if values else "-"


def render_loads(loads: Sequence[LoadRow]) -> list[str]:
    lines = []
    if loads:
        head = (
            f"{'case':<15} {'server':<8} {'checkconf s':>11} {'x gd':>6} {'RSS MB':>7} {'x gd':>6} "
            f"{'start s':>8} {'x gd':>6} {'RSS MB':>7} {'x gd':>6}"
        )
        lines += [head, "-" * len(head)]
        lbase = {r.case: r for r in loads if r.server is GDNSD}
        for r in loads:
            g = lbase.get(r.case)
            lines.append(
                f"{r.case:<15} {r.server.name:<8} {_fmt(r.checkconf_s, '11.2f')} "
                f"{_ratio(r.checkconf_s, g.checkconf_s if g else None):>6} "
                f"{_fmt(r.checkconf_rss, '7.0f')} {_ratio(r.checkconf_rss, g.checkconf_rss if g else None):>6} "
                f"{_fmt(r.start_s, '8.2f')} {_ratio(r.start_s, g.start_s if g else None):>6} "
                f"{_fmt(r.start_rss, '7.0f')} {_ratio(r.start_rss, g.start_rss if g else None):>6}"
                + (f"  [{r.note.strip()}]" if r.note else "")
            )
        lines += ["", LOADER_IS_PYTHON]
    return lines


# Why the load cases have no ``pure`` row (bench/README.rst): measuring it would be
# the same code a second time, for minutes per case.
LOADER_IS_PYTHON = (
    "(no pure rows: PYGDNSD_PURE only chooses how UDP is answered; checkconf and the zone"
    " loader are the same Python in both modes)"
)


def render_scrape(rows: Sequence[Row]) -> list[str]:
    """CPU per query with the status listener scraped over without it, per variant: 1.00x is free."""
    lines = []
    for threads in sorted({r.variant.threads for r in rows if r.case.startswith("scrape-")}):
        def mean(case: str, threads: str = threads) -> float | None:
            values = [r.cpu_us for r in rows if r.case == case and r.variant.threads == threads and r.cpu_us]
            return sum(values) / len(values) if values else None

        off, on = mean("scrape-0"), mean("scrape-1")
        lines.append(
            f"scrape   pygdnsd  {threads:>7}  cpu us/q without http_listen {_fmt(off, '.2f')}, scraped every second "
            f"{_fmt(on, '.2f')}: {_ratio(on, off)} (runs differ by 10-30% on a shared machine)"
        )
    return lines
