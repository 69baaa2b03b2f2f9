"""The engine alone: ``Responder.respond`` time per query, by answer shape, without sockets.

Usage: ``.venv/bin/python bench/engine_profile.py [--queries N] [--spread N] [--cprofile]``

Loads the ``udp`` case's zone (``bench/out/mixed``) the way ``start`` does,
then answers the mixed questions in process: a first pass (every question new
to the engine's caches) and a second pass over the same queries (all cached),
and reports microseconds per query for each shape, with and without
EDNS+DO. What the transport adds on top is the difference to the
``cpu us/q`` column of ``bench/run``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zonegen

from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.engine.stats import Stats
from pygdnsd.instance import load

CLIENT_IP = bytes([127, 0, 0, 1])


def timed_pass(
    respond: Responder, queries: list[tuple[str, bool, bytes]]
) -> dict[tuple[str, bool], list[float]]:
    """Seconds per (shape, edns) over one pass; the ID differs per query as dnsperf's does."""
    spent: dict[tuple[str, bool], list[float]] = defaultdict(lambda: [0.0, 0.0])
    clock = time.perf_counter
    for n, (shape, edns, wire) in enumerate(queries):
        query = (n & 0xFFFF).to_bytes(2, "big") + wire[2:]
        began = clock()
        respond.respond(query, CLIENT_IP, False)
        cell = spent[shape, edns]
        cell[0] += clock() - began
        cell[1] += 1
    return spent


def report(title: str, spent: dict[tuple[str, bool], list[float]]) -> None:
    total = sum(c[0] for c in spent.values())
    count = sum(c[1] for c in spent.values())
    print(f"\n{title}: {1e6 * total / count:.2f} us/query over {count:.0f} queries")
    print(f"  {'shape':<10} {'plain':>8} {'EDNS+DO':>8}")
    for shape, _, _ in zonegen.SHAPES:
        cells = [spent.get((shape, edns), [0.0, 0.0]) for edns in (False, True)]
        text = [f"{1e6 * s / n:8.2f}" if n else "       -" for s, n in cells]
        print(f"  {shape:<10} {text[0]} {text[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--spread", type=int, default=zonegen.MIXED_HOSTS)
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile of each pass")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)
    cfgdir = args.out / "mixed"
    zonegen.build_mixed(cfgdir)
    with tempfile.TemporaryDirectory(prefix="pygdnsd-engine-") as tmp:
        zonegen.write_config(cfgdir, 53, Path(tmp), 1, 1)
        loaded = load(cfgdir)
    responder = Responder(loaded.zones, EngineSettings.from_config(loaded.config, cookie_secret=bytes(32)), Stats())
    queries = [
        (shape, n % 2 == 1, zonegen.query_wire(name, qtype, edns_do=n % 2 == 1))
        for n, (shape, name, qtype) in enumerate(zonegen.mixed_questions(args.queries, args.spread))
    ]
    gc.freeze()  # as a server would after loading: the zone data is not garbage
    for title in ("first pass (cold caches)", "second pass (warm caches)"):
        if args.cprofile:
            profile = cProfile.Profile()
            profile.enable()
            spent = timed_pass(responder, queries)
            profile.disable()
            report(title, spent)
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        else:
            report(title, timed_pass(responder, queries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
