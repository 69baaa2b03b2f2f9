"""gdnsd 3.8.1 vs pygdnsd, side by side on the same zones and queries; prints one table.

Usage: ``.venv/bin/python bench/bench.py [CASE ...] [--seconds N] [--out DIR]``
with CASE among udp, udp-hot, latency, tcp, geoip, geoip-new, geoip-hot, load-big, load-warn,
load-styles, load-many, load-many-plain, load-city (default: all).

* udp: the mixed query file (binary, dnsperf ``-B``: half the queries with
  EDNS+DO, a third mixed-case), open loop for N seconds. In every traffic
  case pygdnsd runs with its compiled fast path and as ``pure``
  (PYGDNSD_PURE=1); the load cases have no ``pure`` row (the loader is the
  same Python in both modes).
* udp-hot: the same mix over a few hundred names (a hot set an answer cache
  holds), to separate the per-query cost from the cache-miss cost.
* latency: the same file at a fixed 20k qps, every answer's latency sampled
  (dnsperf ``-v``): p50/p99/p99.9.
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
summarises the ratios to gdnsd as best / median (qps: the highest is best;
CPU and latency: the lowest).

Server CPU per query is utime+stime of the server process (all threads, and
its worker processes) over the dnsperf run divided by the queries answered:
it is the stable figure on a 2-core machine where dnsperf itself needs about
a core. Ratios are against
gdnsd in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
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
from tables import LoadRow, Report, Row, Variant, render

import geoip_data

START_TIMEOUT = 120.0
LOAD_TIMEOUT = 600.0
WARMUP_SECONDS = 3
# The unmeasured pass through the whole query file ends after this long at most.
WARMUP_PASS_SECONDS = 120
LATENCY_QPS = 20_000


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
    p999 = dnsperf.percentile(result.latencies, 0.999)
    row.p50_ms = p50 * 1000 if p50 is not None else None
    row.p99_ms = p99 * 1000 if p99 is not None else None
    row.p999_ms = p999 * 1000 if p999 is not None else None
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
    # In a child: generating the City database takes this process to 3.4 GB, and every
    # server started later would report that as its peak RSS (Linux keeps the largest RSS
    # of a process across its fork and exec, and wait4 reports it).
    builder = multiprocessing.get_context("fork").Process(target=build, args=(cfgdir,))
    builder.start()
    builder.join()
    if builder.exitcode != 0:
        raise RuntimeError(f"generating {cfgdir} failed (exit code {builder.exitcode})")
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
    parser.add_argument(
        "--gdnsd-threads",
        type=int,
        nargs="+",
        default=[1],
        help="gdnsd udp/tcp thread counts to try; ratios are to the first",
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat the traffic cases; ratios summarised as best/median")
    parser.add_argument(
        "--no-pure", action="store_true", help="leave out pygdnsd on its pure-Python path (PYGDNSD_PURE=1)"
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
    # In every traffic case pygdnsd both ways: compiled fast path (the default) and
    # pure Python. Over TCP both run the same Python (the compiled module only
    # answers UDP), so there the two rows show the run-to-run noise.
    traffic_servers = pygdnsds if args.no_pure else [PYGDNSD, PYGDNSD_PURE, *pygdnsds[1:]]

    def variants(threads: Sequence[int], gdnsd_threads: Sequence[int]) -> list[Variant]:
        gdnsds = [Variant(GDNSD, n, n) for n in gdnsd_threads]
        return gdnsds + [Variant(py, n, n) for n in threads for py in traffic_servers]

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
                gdnsd_threads = args.gdnsd_threads[:1] if latency else args.gdnsd_threads
                report.rows += traffic_case(case, variants(threads, gdnsd_threads), load, args.out, scratch, args.warmup, run)
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
