"""Where pygdnsd's time goes under load: py-spy on the serving process while dnsperf runs.

Usage: ``.venv/bin/python bench/profile_server.py [--case udp|udp-hot|tcp|geoip] [--threads N]
[--seconds N] [--pure]`` (``--pure``: with ``PYGDNSD_PURE=1``, the pure-Python UDP path).
Needs py-spy (``.venv/bin/pip install py-spy``; a tool for investigating,
not a project dependency). py-spy sees Python frames only: the compiled
fast path's work shows as the line that calls ``Batch.serve``
(``perf record -g -p PID`` shows inside it).

Writes ``bench/out/prof/<case>-<threads>t.raw`` (py-spy's collapsed stacks)
and prints: the server's CPU per query split into user and kernel time,
context switches per query (all threads, from /proc/PID/task/*/status),
then the profile summarised by function and by source line. py-spy samples
wall time of non-idle threads: a thread blocked in ``poll`` shows up too, as
the line that polls.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dnsperf
import profile_summary
import zonegen
from servers import PYGDNSD, PYGDNSD_PURE, REPO, Running, free_port

import geoip_data

PY_SPY = REPO / ".venv/bin/py-spy"


def context_switches(pid: int) -> int:
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # the thread ended
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def by_line(text: str, top: int) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        counts[f"{name} {where.rsplit('/', 1)[-1].rstrip(')')}"] += int(count)
    return [f"{100 * n / max(total, 1):6.1f}%  {leaf}" for leaf, n in counts.most_common(top)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("udp", "udp-hot", "tcp", "geoip"), default="udp")
    parser.add_argument("--threads", type=int, default=1, help="udp_threads and tcp_threads")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pure", action="store_true", help="the pure-Python UDP path (PYGDNSD_PURE=1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)
    if not PY_SPY.exists():
        sys.exit(f"profile_server: {PY_SPY} missing: .venv/bin/pip install py-spy")
    if args.case == "geoip":
        cfgdir = args.out / "geoip"
        datafile = geoip_data.build_geoip(cfgdir)
    else:
        cfgdir = args.out / "mixed"
        datafile = zonegen.build_mixed(cfgdir, hot=args.case == "udp-hot")
    raw = args.out / "prof" / f"{args.case}-{args.threads}t.raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mode = "tcp" if args.case == "tcp" else "udp"
    # dnsperf runs 2 s longer than the profile on both sides, so py-spy sees steady load only.
    load = dnsperf.Load(mode, args.seconds + 4, clients=4)
    with tempfile.TemporaryDirectory(prefix="pygdnsd-prof-") as tmp:
        zonegen.write_config(cfgdir, port, Path(tmp), args.threads, args.threads)
        with Running(PYGDNSD_PURE if args.pure else PYGDNSD, cfgdir, 120) as server:
            client = subprocess.Popen(
                dnsperf.command(load, port, datafile), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            try:
                time.sleep(2)
                user0, sys0 = server.cpu()
                switches0 = context_switches(server.pid)
                subprocess.run(
                    [str(PY_SPY), "record", "-p", str(server.pid), "-d", str(args.seconds), "-r", "250",
                     "-f", "raw", "--nonblocking", "-o", str(raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=args.seconds + 60, check=False,
                )  # fmt: skip
                user1, sys1 = server.cpu()
                switches1 = context_switches(server.pid)
                output, _ = client.communicate(timeout=args.seconds + 60)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
    result = dnsperf.parse(output)
    # The profiled window is most of the run; per-query figures use its rate.
    window = user1 - user0 + sys1 - sys0
    requests = int(result.qps * args.seconds) or 1
    print(f"{args.case}, {args.threads} thread(s): {result.qps:.0f} qps, lost {result.lost}")
    print(
        f"server CPU {1e6 * window / requests:.1f} us/query "
        f"(user {1e6 * (user1 - user0) / requests:.1f}, kernel {1e6 * (sys1 - sys0) / requests:.1f}), "
        f"{(switches1 - switches0) / requests:.2f} context switches/query"
    )
    text = raw.read_text()
    total, own, _inclusive = profile_summary.summarise(text)
    print(f"\n{total} samples; by function (self):")
    for function, count in own.most_common(12):
        print(f"{100 * count / max(total, 1):6.1f}%  {function}")
    print("\nby line (leaf):")
    print("\n".join(by_line(text, 15)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
