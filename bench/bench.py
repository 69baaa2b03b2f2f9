"""gdnsd 3.8.1 vs pygdnsd, side by side on the same zones and queries; prints one table.

Usage: ``.venv/bin/python bench/bench.py [CASE ...] [--seconds N] [--out DIR]``
with CASE among udp, udp-hot, latency, tcp, geoip, geoip-new, geoip-hot, load-big, load-warn,
load-styles, load-many, load-many-plain, load-city (default: all).

* udp: the mixed query file (binary, dnsperf ``-B``: half the queries with
  EDNS+DO, a third mixed-case), open loop for N seconds. In the UDP cases
  pygdnsd runs with its compiled fast path and as ``pure`` (PYGDNSD_PURE=1).
* udp-hot: the same mix over a few hundred names (a hot set an answer cache
  holds), to separate the per-query cost from the cache-miss cost.
* latency: the same file at a fixed 20k qps, every answer's latency sampled
  (dnsperf ``-v``): p50/p99.
* tcp: the same file over TCP, several pipelining connections.
* scrape: pygdnsd alone on the udp case, without ``http_listen`` and with it
  and a ``/metrics`` scrape every second (Prometheus's pace, faster than any
  real one), alternating, twice each: what the status listener costs DNS.
* geoip / geoip-new / geoip-hot: DYNA names over GeoLite2 Country, every
  query with a client-subnet option of a random network; geoip-new never
  repeats one, geoip-hot repeats 20,000 (``geoip_data``).
* load-city: a generated City database of realistic size under a geoip map
  (``city_data``): checkconf and start times and RSS, as the load cases.
* load-big / load-many: a 1M-record zone, and 1,000 zones x 1,000 records:
  ``checkconf`` wall time and peak RSS, ``start``-to-``DNS listeners started``
  time and the serving process's peak RSS. load-warn is load-big with about
  77,000 warnings (MX targets without addresses); load-styles is load-big
  with a multi-line SOA and TTL and class columns; load-many is in that
  everyday style (one warning per zone), load-many-plain the one-line style.

Each traffic run starts with an unmeasured pass through the whole query
file, then ``--warmup`` seconds. ``--runs N`` repeats the traffic cases and
summarises the ratios to gdnsd as best / median.

Server CPU per query is utime+stime of the server process (all threads, and
its worker processes) over the dnsperf run divided by the queries answered:
it is the stable figure on a 2-core machine where dnsperf itself needs about
a core. Ratios are against
gdnsd in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import city_data
import dnsperf
import zonegen
from servers import (
    GDNSD,
    PYGDNSD,
    PYGDNSD_PURE,
    Running,
    Server,
    check_tools,
    checkconf,
    free_port,
    pygdnsd_of,
)

import geoip_data

START_TIMEOUT = 120.0
LOAD_TIMEOUT = 600.0
WARMUP_SECONDS = 3
# The unmeasured pass through the whole query file ends after this long at most.
WARMUP_PASS_SECONDS = 120
LATENCY_QPS = 20_000
# Cases served over UDP: pygdnsd runs there both with its compiled fast path and pure Python.
UDP_CASES = ("udp", "udp-hot", "latency", "geoip", "geoip-new", "geoip-hot")


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


def soa_query(zone: str) -> bytes:
    return zonegen.query_wire(zone, 6, edns_do=False)


def answers_soa(port: int, zone: str) -> bool:
    """One UDP SOA query: does the server answer NOERROR for ``zone``?"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        query = b"\x12\x34" + soa_query(zone)[2:]
        sock.sendto(query, ("127.0.0.1", port))
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            return False
    flags, _qdcount, ancount = struct.unpack("!HHH", reply[2:8])
    return reply[:2] == b"\x12\x34" and flags & 0xF == 0 and ancount >= 1


class Scraper:
    """GET /metrics once a second on a thread, as Prometheus would (every answer must be 200)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.scrapes = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("GET", "/metrics")
                response = connection.getresponse()
                response.read()
                self.scrapes += 1
                self.failures += response.status != 200
            except OSError:
                self.failures += 1
            finally:
                connection.close()


def serve_and_measure(
    variant: Variant,
    cfgdir: Path,
    scratch: Path,
    case: str,
    load: dnsperf.Load,
    datafile: Path,
    warmup: int,
    run: int,
    scraped: bool = False,
) -> Row:
    """``scraped``: pygdnsd with ``http_listen``, scraped once a second while dnsperf runs."""
    port = free_port()
    http_port = free_port()
    rundir = Path(tempfile.mkdtemp(prefix=f"{variant.server.name}-", dir=scratch))
    options = f"  http_listen => 127.0.0.1:{http_port}\n" if scraped else ""
    zonegen.write_config(cfgdir, port, rundir, variant.udp_threads, variant.tcp_threads, options)
    row = Row(case, variant, load.describe(), run)
    with Running(variant.server, cfgdir, START_TIMEOUT) as server:
        # Every question of the file asked once first: what is measured is a
        # server that has seen its traffic, not pygdnsd building each answer's
        # first time in Python (which a first pass at 20,000 qps is mostly).
        warm = dnsperf.Load(mode=load.mode, seconds=WARMUP_PASS_SECONDS, clients=load.clients, passes=1)
        dnsperf.run(warm, port, datafile)
        if warmup:
            dnsperf.run(dnsperf.Load(mode=load.mode, seconds=warmup, clients=load.clients), port, datafile)
        user_before, sys_before = server.cpu()
        by_process = server.cpu_by_process()
        began = time.monotonic()
        if scraped:
            with Scraper(http_port) as scraper:
                result = dnsperf.run(load, port, datafile)
            row.note = f"{scraper.scrapes} scrapes, {scraper.failures} failed"
        else:
            result = dnsperf.run(load, port, datafile)
        wall = time.monotonic() - began
        user_after, sys_after = server.cpu()
        by_process_after = server.cpu_by_process()
        user, kernel = user_after - user_before, sys_after - sys_before
        cpu = user + kernel
        row.rss_mb = server.rss()
    row.cores = cpu / wall if wall > 0 else None
    row.per_process = tuple(
        (after - by_process.get(pid, 0.0)) / wall for pid, after in by_process_after.items() if wall > 0
    )
    row.qps = result.qps
    row.sent = result.sent
    row.lost = result.lost
    row.rcodes = result.rcodes
    row.mean_ms = result.mean_latency * 1000
    row.cpu_us = cpu / result.completed * 1e6 if result.completed else None
    row.sys_share = kernel / cpu if cpu else None
    p50 = dnsperf.percentile(result.latencies, 0.50)
    p99 = dnsperf.percentile(result.latencies, 0.99)
    row.p50_ms = p50 * 1000 if p50 is not None else None
    row.p99_ms = p99 * 1000 if p99 is not None else None
    if result.completed == 0:
        row.note = "no answers: " + result.output[-300:].replace("\n", " ")
    return row


SCRAPE_ROUNDS = 2


def scrape_case(variants: Sequence[Variant], load: dnsperf.Load, out: Path, scratch: Path, warmup: int) -> list[Row]:
    """Each pygdnsd variant without the status listener and with it scraped every second, alternating."""
    cfgdir = out / "mixed"
    datafile = zonegen.build_mixed(cfgdir)
    rows = []
    for variant in variants:
        for round_ in range(SCRAPE_ROUNDS):
            for scraped in (False, True):
                name = "scrape-1" if scraped else "scrape-0"
                print(f"bench: {name} {variant.server.name} threads {variant.threads} (round {round_ + 1}) ...", file=sys.stderr, flush=True)
                try:
                    rows.append(serve_and_measure(variant, cfgdir, scratch, name, load, datafile, warmup, round_ + 1, scraped))
                except (RuntimeError, OSError, ValueError) as exc:
                    rows.append(Row(name, variant, load.describe(), note=f"failed: {exc}"[:300]))
    return rows


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


def traffic_case(
    name: str, variants: Sequence[Variant], load: dnsperf.Load, out: Path, scratch: Path, warmup: int, run: int = 1
) -> list[Row]:
    if name in geoip_data.GEOIP_CASES:
        cfgdir = out / "geoip"
        datafile = geoip_data.build_geoip(cfgdir, geoip_data.GEOIP_CASES[name])
    else:
        cfgdir = out / "mixed"
        datafile = zonegen.build_mixed(cfgdir, hot=name.endswith("-hot"))
    rows = []
    for variant in variants:
        print(
            f"bench: {name} {variant.server.name} threads {variant.threads} (run {run}) ...", file=sys.stderr, flush=True
        )
        try:
            rows.append(serve_and_measure(variant, cfgdir, scratch, name, load, datafile, warmup, run))
        except (RuntimeError, OSError, ValueError) as exc:
            rows.append(Row(name, variant, load.describe(), run, note=f"failed: {exc}"[:300]))
    return rows


def load_case(
    name: str,
    build: Callable[[Path], None],
    zone: str,
    servers: Sequence[Server],
    out: Path,
    scratch: Path,
    data: str | None = None,
) -> list[LoadRow]:
    """``data``: the generated config dir's name under ``out``, when not the case's (its data changed)."""
    cfgdir = out / (data or name)
    print(f"bench: {name}: generating zones in {cfgdir} ...", file=sys.stderr, flush=True)
    build(cfgdir)
    rows = []
    for server in servers:
        print(f"bench: {name} {server.name} ...", file=sys.stderr, flush=True)
        row = LoadRow(name, server)
        port = free_port()
        rundir = Path(tempfile.mkdtemp(prefix=f"{server.name}-", dir=scratch))
        zonegen.write_config(cfgdir, port, rundir, 1, 1)
        check = checkconf(server, cfgdir, LOAD_TIMEOUT)
        if check.ok:
            row.checkconf_s, row.checkconf_rss = check.seconds, check.peak_rss_mb
        else:
            row.note = "checkconf failed: " + check.output[-300:].replace("\n", " ")
        try:
            with Running(server, cfgdir, LOAD_TIMEOUT) as running:
                row.start_s = running.start_seconds
                row.start_rss = running.rss()
                if not answers_soa(port, zone):
                    row.note += f" no SOA answer for {zone} after start"
        except RuntimeError as exc:
            row.note += f" start failed: {exc}"[:300]
        rows.append(row)
    return rows


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
        f"{'cpu/gd':>7} {'sys':>4} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99/gd':>7} {'lost':>7} "
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
            f"{_ratio(r.p99_ms, g.p99_ms if g else None):>7} {_fmt(r.lost, '7d')} "
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
    """Each (case, run)'s gdnsd row: every ratio is to gdnsd in the same run."""
    return {(r.case, r.run): r for r in rows if r.variant.server is GDNSD}


def render_summary(rows: Sequence[Row]) -> list[str]:
    """Per case and server, the ratios to gdnsd over every run: best and median.

    Ratios are taken within each run (the machine's load varies between
    runs far more than within one), then summarised.
    """
    base = gdnsd_rows(rows)
    ratios: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}
    for r in rows:
        g = base.get((r.case, r.run))
        if g is None or r is g:
            continue
        cpu, p99 = ratios.setdefault((r.case, r.variant.server.name, r.variant.threads), ([], []))
        if r.cpu_us is not None and g.cpu_us:
            cpu.append(r.cpu_us / g.cpu_us)
        if r.p99_ms is not None and g.p99_ms:
            p99.append(r.p99_ms / g.p99_ms)
    runs = len({r.run for r in rows})
    lines = [
        f"Ratios to gdnsd in the same run, best / median of {runs} run(s):",
        f"{'case':<8} {'server':<8} {'udp/tcp':>7} {'cpu/gd best':>11} {'median':>7} {'p99/gd best':>11} {'median':>7}",
    ]
    for (case, server, threads), (cpu, p99) in ratios.items():
        lines.append(
            f"{case:<8} {server:<8} {threads:>7} {_best(cpu):>11} {_median(cpu):>7} {_best(p99):>11} {_median(p99):>7}"
        )
    return lines


def _best(values: list[float]) -> str:
    return f"{min(values):.2f}x" if values else "-"


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
    return lines


CASES = (
    "udp", "udp-hot", "latency", "tcp", "geoip", "geoip-new", "geoip-hot", "scrape", "load-big", "load-warn", "load-styles",
    "load-many", "load-many-plain", "load-city",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"{', '.join(CASES)} or all (default)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each dnsperf run")
    parser.add_argument("--warmup", type=int, default=WARMUP_SECONDS, help="unmeasured dnsperf run first")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c for udp and tcp")
    parser.add_argument("--latency-qps", type=int, default=LATENCY_QPS, help="dnsperf -Q for latency")
    parser.add_argument(
        "--py-threads", type=int, nargs="+", default=[1, 2], help="pygdnsd udp/tcp thread counts to try"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat the traffic cases; ratios summarised as best/median")
    parser.add_argument(
        "--no-pure", action="store_true", help="leave out pygdnsd's pure-Python UDP path (PYGDNSD_PURE=1)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also run the pygdnsd of another checkout (its .venv, from dev/bootstrap), shown as 'before':"
        " a change measured against its base in the same run, e.g. a `git worktree add` of the base commit",
    )
    args = parser.parse_args(argv)
    unknown = set(args.cases) - {*CASES, "all"}
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    cases = CASES if not args.cases or "all" in args.cases else tuple(args.cases)
    pygdnsds = [PYGDNSD] if args.before is None else [PYGDNSD, pygdnsd_of(args.before.resolve(), "before")]
    check_tools([dnsperf.DNSPERF, *(server.argv[0] for server in pygdnsds[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    servers = [GDNSD, *pygdnsds]
    # Over UDP, pygdnsd both ways: compiled fast path (the default) and pure Python.
    udp_servers = pygdnsds if args.no_pure else [PYGDNSD, PYGDNSD_PURE, *pygdnsds[1:]]

    def variants(case: str, threads: Sequence[int]) -> list[Variant]:
        chosen = udp_servers if case in UDP_CASES else pygdnsds
        return [Variant(GDNSD, 1, 1)] + [Variant(py, n, n) for n in threads for py in chosen]

    report = Report()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pygdnsd-bench-") as tmp:
        scratch = Path(tmp)
        for run in range(1, args.runs + 1):
            for case in ("udp", "udp-hot", "latency", "tcp", *geoip_data.GEOIP_CASES):
                if case not in cases:
                    continue
                mode = "tcp" if case == "tcp" else "udp"
                latency = case == "latency"
                load = dnsperf.Load(
                    mode, args.seconds, args.clients, max_qps=args.latency_qps if latency else 0, verbose=latency
                )
                threads = args.py_threads[:1] if latency else args.py_threads
                report.rows += traffic_case(case, variants(case, threads), load, args.out, scratch, args.warmup, run)
        if "scrape" in cases:
            load = dnsperf.Load("udp", args.seconds, args.clients)
            report.rows += scrape_case([Variant(PYGDNSD, n, n) for n in args.py_threads], load, args.out, scratch, args.warmup)
        if "load-big" in cases:
            report.loads += load_case("load-big", zonegen.build_big, zonegen.BIG_ZONE, servers, args.out, scratch)
        if "load-warn" in cases:
            report.loads += load_case("load-warn", zonegen.build_warn, zonegen.BIG_ZONE, servers, args.out, scratch)
        if "load-styles" in cases:
            report.loads += load_case("load-styles", zonegen.build_styles, zonegen.BIG_ZONE, servers, args.out, scratch)
        if "load-many" in cases:
            report.loads += load_case(
                "load-many", zonegen.build_everyday, "z999.example", servers, args.out, scratch, data="load-many-everyday"
            )
        if "load-many-plain" in cases:
            report.loads += load_case(
                "load-many-plain", zonegen.build_many, "z999.example", servers, args.out, scratch, data="load-many"
            )
        if "load-city" in cases:
            report.loads += load_case("load-city", city_data.build_city, city_data.CITY_ZONE, servers, args.out, scratch)
    print(render(report))
    print(f"\n(total {time.monotonic() - began:.0f} s; udp/tcp = the config's udp_threads/tcp_threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
