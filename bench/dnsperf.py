"""Running dnsperf and reading its report (and, with ``-v``, every query's latency)."""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

DNSPERF = "/usr/bin/dnsperf"
# dnsperf gives up on queries after -t seconds; its run ends that much later at most.
QUERY_TIMEOUT = 2
MAX_LATENCY_SAMPLES = 2_000_000


@dataclass(frozen=True, slots=True)
class Load:
    """Client settings: identical for both servers in a case."""

    mode: str = "udp"  # udp | tcp
    seconds: int = 10
    clients: int = 4
    outstanding: int = 100
    max_qps: int = 0  # 0: as fast as the server answers
    threads: int = 1
    verbose: bool = False  # per-query latencies (costs client CPU)
    passes: int = 0  # stop after this many passes through the query file (0: only the time limit)

    def describe(self) -> str:
        rate = f"-Q {self.max_qps}" if self.max_qps else "open"
        return f"{self.mode} -c {self.clients} -q {self.outstanding} {rate} {self.seconds}s"


@dataclass(frozen=True, slots=True)
class Result:
    sent: int
    completed: int
    lost: int
    qps: float
    seconds: float
    mean_latency: float
    latencies: tuple[float, ...]  # seconds, answered queries only (verbose runs)
    rcodes: str
    output: str


def command(load: Load, port: int, datafile: Path) -> list[str]:
    argv = [
        DNSPERF,
        "-s", "127.0.0.1",
        "-p", str(port),
        "-m", load.mode,
        "-d", str(datafile),
        "-B",
        "-l", str(load.seconds),
        "-c", str(load.clients),
        "-T", str(load.threads),
        "-q", str(load.outstanding),
        "-t", str(QUERY_TIMEOUT),
    ]  # fmt: skip
    if load.max_qps:
        argv += ["-Q", str(load.max_qps)]
    if load.passes:
        argv += ["-n", str(load.passes)]
    if load.verbose:
        argv.append("-v")
    return argv


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise ValueError(f"dnsperf output lacks {pattern!r}:\n{text[-2000:]}")
    return float(match.group(1))


def parse(text: str) -> Result:
    latencies: list[float] = []
    for line in text.splitlines():
        # "> NOERROR <name> <type> 0.000264"; timeouts show "T" and have no latency.
        if line.startswith("> ") and not line.startswith("> T ") and len(latencies) < MAX_LATENCY_SAMPLES:
            with contextlib.suppress(ValueError, IndexError):
                latencies.append(float(line.rsplit(None, 1)[1]))
    rcodes = re.search(r"^\s*Response codes:\s*(.*)$", text, re.MULTILINE)
    return Result(
        sent=int(_number(r"Queries sent:\s+(\d+)", text)),
        completed=int(_number(r"Queries completed:\s+(\d+)", text)),
        lost=int(_number(r"Queries lost:\s+(\d+)", text)),
        qps=_number(r"Queries per second:\s+([\d.]+)", text),
        seconds=_number(r"Run time \(s\):\s+([\d.]+)", text),
        mean_latency=_number(r"Average Latency \(s\):\s+([\d.]+)", text),
        latencies=tuple(sorted(latencies)),
        rcodes=rcodes.group(1).strip() if rcodes else "",
        output=text,
    )


def run(load: Load, port: int, datafile: Path) -> Result:
    proc = subprocess.run(
        command(load, port, datafile),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=load.seconds + QUERY_TIMEOUT + 30,
        check=False,
    )
    return parse(proc.stdout + proc.stderr)


def percentile(sorted_values: tuple[float, ...], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]
