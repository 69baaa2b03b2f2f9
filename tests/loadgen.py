#!/usr/bin/env python3
"""A DNS load generator for the zero-loss replace tests and benchmark (plain stdlib).

UDP: queries at a fixed rate from one thread, through a few non-blocking
sockets (source ports), each query matched to its answer by (source port, ID).
TCP: queries on fresh connections at a fixed rate, each connection on a small
worker pool so a stalled server cannot stall the schedule. Runs for a bounded
duration, waits a grace period for late answers, then reports what was sent,
answered, lost (no answer) and failed (a wrong answer, or a TCP error), with
the send times of every loss relative to the start.

Loopback only: any other target is refused. Usable from pytest
(``run_load(LoadSpec(...))``) and as a script inside the test container::

    python3 loadgen.py --server 127.0.0.1:53 --qps 5000 --tcp-rate 300 \\
        --duration 20 --grace 2 --qname www.example.com --json

A run in a process of its own, in the background of a test or a benchmark
(``run_argv``), also reports the CLOCK_MONOTONIC value at which it began
sending, so its losses can be placed against what the caller did meanwhile
(``LoadOutcome.from_report``).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

QTYPE_A = 1
CLASS_IN = 1
MAX_LOSS_TIMES = 1000  # reported loss timestamps are capped; the counts are not


@dataclass(frozen=True)
class LoadSpec:
    host: str = "127.0.0.1"
    port: int = 53
    qname: str = "example.com"
    qtype: int = QTYPE_A
    rcode: int = 0  # the rcode every answer must carry
    qps: float = 5000.0  # UDP queries per second (0: none)
    tcp_rate: float = 0.0  # TCP connections (one query each) per second
    duration: float = 5.0
    grace: float = 1.0
    udp_sockets: int = 4
    tcp_workers: int = 16
    tcp_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"loadgen only sends to loopback addresses, not {self.host}")
        if not 0 < self.duration <= 3600 or not 0 <= self.grace <= 60:
            raise ValueError("duration must be in (0, 3600] s and grace in [0, 60] s")


@dataclass
class LoadResult:
    udp_sent: int = 0
    udp_answered: int = 0
    udp_lost: int = 0
    udp_failed: int = 0
    udp_loss_times: list[float] = field(default_factory=list)
    tcp_sent: int = 0
    tcp_answered: int = 0
    tcp_failed: int = 0
    tcp_failure_times: list[float] = field(default_factory=list)
    tcp_errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0  # of the sending phase

    @property
    def udp_qps(self) -> float:
        return self.udp_sent / self.elapsed if self.elapsed else 0.0

    @property
    def clean(self) -> bool:
        return not (self.udp_lost or self.udp_failed or self.tcp_failed)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["udp_qps"] = round(self.udp_qps, 1)
        return out

    def summary(self) -> str:
        return (
            f"UDP sent {self.udp_sent} ({self.udp_qps:.0f}/s) answered {self.udp_answered} "
            f"lost {self.udp_lost} failed {self.udp_failed}; TCP sent {self.tcp_sent} "
            f"answered {self.tcp_answered} failed {self.tcp_failed} {dict(self.tcp_errors)}"
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        """The inverse of ``as_json``."""
        return cls(**{key: value for key, value in data.items() if key != "udp_qps"})


@dataclass(frozen=True)
class LoadOutcome:
    """What a run in a process of its own saw, and when (monotonic clock) it began sending."""

    started: float
    result: LoadResult

    @classmethod
    def from_report(cls, stdout: str) -> LoadOutcome:
        """The report the last line of ``run_argv``'s output holds; ValueError if there is none."""
        lines = stdout.strip().splitlines()
        if not lines:
            raise ValueError("loadgen printed no report")
        report = json.loads(lines[-1])
        return cls(started=float(report["started"]), result=LoadResult.from_json(report["result"]))

    def udp_losses_after(self, moment: float) -> list[float]:
        """Send times (relative to start) of lost UDP queries sent after ``moment``."""
        return [t for t in self.result.udp_loss_times if self.started + t > moment]

    def tcp_failures_after(self, moment: float) -> list[float]:
        return [t for t in self.result.tcp_failure_times if self.started + t > moment]


# --- DNS on the wire -----------------------------------------------------------


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            if len(raw) > 63:
                raise ValueError(f"label too long in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    return bytes(out)


def question(qname: str, qtype: int) -> bytes:
    return encode_name(qname) + struct.pack("!HH", qtype, CLASS_IN)


def query(qid: int, question_bytes: bytes) -> bytes:
    # ID, flags 0 (a plain query, RD clear as for an authoritative server), QDCOUNT 1.
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + question_bytes


def answer_ok(response: bytes, qid: int, question_bytes: bytes, rcode: int) -> bool:
    """The answer to our query: same ID, QR set, expected rcode, our question echoed."""
    if len(response) < 12:
        return False
    rid, flags, qdcount = struct.unpack("!HHH", response[:6])
    return (
        rid == qid
        and flags & 0x8000 != 0
        and flags & 0x000F == rcode
        and qdcount == 1
        and response[12 : 12 + len(question_bytes)].lower() == question_bytes.lower()
    )


# --- UDP ---------------------------------------------------------------------


def _run_udp(spec: LoadSpec, result: LoadResult, start: float) -> None:
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    qbytes = question(spec.qname, spec.qtype)
    socks: list[socket.socket] = []
    try:
        for _ in range(max(1, spec.udp_sockets)):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((spec.host if family == socket.AF_INET6 else "127.0.0.1", 0))
            sock.connect((spec.host, spec.port))
            sock.setblocking(False)
            socks.append(sock)
        by_fd = {sock.fileno(): i for i, sock in enumerate(socks)}
        next_id = [0] * len(socks)
        pending: dict[tuple[int, int], float] = {}
        poller = select.poll()
        for sock in socks:
            poller.register(sock, select.POLLIN)
        sending_end = start + spec.duration
        end = sending_end + spec.grace
        turn = 0

        def lose(sent_at: float) -> None:
            result.udp_lost += 1
            if len(result.udp_loss_times) < MAX_LOSS_TIMES:
                result.udp_loss_times.append(round(sent_at - start, 4))

        while True:
            now = time.monotonic()
            if now >= end or (now >= sending_end and not pending):
                break
            if now < sending_end:
                due = int((now - start) * spec.qps) - result.udp_sent
                for _ in range(min(due, 1000)):  # catch up in bounded bursts
                    index = turn % len(socks)
                    turn += 1
                    qid = next_id[index]
                    next_id[index] = (qid + 1) & 0xFFFF
                    key = (index, qid)
                    if key in pending:  # the ID came round again: that one is lost
                        lose(pending.pop(key))
                    # A failed send still counts as sent and (unless answered) lost.
                    with contextlib.suppress(BlockingIOError, ConnectionRefusedError, InterruptedError):
                        socks[index].send(query(qid, qbytes))
                    result.udp_sent += 1
                    pending[key] = now
            else:
                result.elapsed = spec.duration
            for fd, _events in poller.poll(1):
                index = by_fd[fd]
                sock = socks[index]
                for _ in range(256):
                    try:
                        data = sock.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionRefusedError:
                        continue  # an ICMP port unreachable for an earlier query
                    if len(data) < 2:
                        result.udp_failed += 1
                        continue
                    qid = struct.unpack("!H", data[:2])[0]
                    sent_at = pending.pop((index, qid), None)
                    if sent_at is None:
                        continue  # a duplicate or a very late answer to a query counted lost
                    if answer_ok(data, qid, qbytes, spec.rcode):
                        result.udp_answered += 1
                    else:
                        result.udp_failed += 1
        for sent_at in sorted(pending.values()):
            lose(sent_at)
        if not result.elapsed:
            result.elapsed = min(time.monotonic(), sending_end) - start
    finally:
        for sock in socks:
            sock.close()


# --- TCP ---------------------------------------------------------------------


def _tcp_query(spec: LoadSpec, qid: int, qbytes: bytes) -> str | None:
    """One query on a fresh connection; None when answered correctly, else why not."""
    message = query(qid, qbytes)
    try:
        with socket.create_connection((spec.host, spec.port), timeout=spec.tcp_timeout) as sock:
            sock.sendall(struct.pack("!H", len(message)) + message)
            data = b""
            deadline = time.monotonic() + spec.tcp_timeout
            need = 2
            for _ in range(1000):
                if len(data) >= need or time.monotonic() > deadline:
                    break
                chunk = sock.recv(65537)
                if not chunk:
                    return "eof"
                data += chunk
                if len(data) >= 2:
                    need = 2 + struct.unpack("!H", data[:2])[0]
            if len(data) < need or need == 2:
                return "timeout"
            return None if answer_ok(data[2:need], qid, qbytes, spec.rcode) else "bad-answer"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except OSError as exc:
        return type(exc).__name__


def _run_tcp(spec: LoadSpec, result: LoadResult, start: float) -> None:
    qbytes = question(spec.qname, spec.qtype)
    lock = threading.Lock()
    futures: list[Future[None]] = []

    def one(qid: int, sent_at: float) -> None:
        problem = _tcp_query(spec, qid, qbytes)
        with lock:
            if problem is None:
                result.tcp_answered += 1
            else:
                result.tcp_failed += 1
                result.tcp_errors[problem] = result.tcp_errors.get(problem, 0) + 1
                if len(result.tcp_failure_times) < MAX_LOSS_TIMES:
                    result.tcp_failure_times.append(round(sent_at - start, 4))

    with ThreadPoolExecutor(max_workers=spec.tcp_workers, thread_name_prefix="loadgen-tcp") as pool:
        sending_end = start + spec.duration
        while True:
            now = time.monotonic()
            if now >= sending_end:
                break
            due = int((now - start) * spec.tcp_rate) - result.tcp_sent
            for _ in range(min(due, 100)):
                futures.append(pool.submit(one, result.tcp_sent & 0xFFFF, now))
                result.tcp_sent += 1
            time.sleep(0.002)
        # Every connection is bounded by tcp_timeout; the pool drains on exit.


def run_load(spec: LoadSpec, result: LoadResult | None = None) -> LoadResult:
    """Run UDP and TCP load together for ``spec.duration`` (+ grace); return the tally.

    ``result``, if given, is the tally counted into as the run goes: another
    thread may watch it (e.g. wait until the first answers came back).
    """
    result = result if result is not None else LoadResult()
    start = time.monotonic()
    threads = []
    if spec.tcp_rate > 0:
        threads.append(threading.Thread(target=_run_tcp, args=(spec, result, start), name="loadgen-tcp"))
    for thread in threads:
        thread.start()
    if spec.qps > 0:
        _run_udp(spec, result, start)
    else:
        result.elapsed = spec.duration
    for thread in threads:
        thread.join(timeout=spec.duration + spec.grace + spec.tcp_timeout * 4 + 10)
    result.udp_loss_times.sort()
    result.tcp_failure_times.sort()
    return result


def run_argv(python: str, script: str, spec: LoadSpec) -> list[str]:
    """The command that runs ``spec`` with ``script`` (this file, wherever the runner
    sees it) and prints the report ``LoadOutcome.from_report`` reads."""
    return [python, script, "--spec", json.dumps(asdict(spec))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--spec", help="a LoadSpec as JSON; the others are then ignored, and the "
                        "report says when sending began (see run_argv)")
    parser.add_argument("--server", default="127.0.0.1:53", help="HOST:PORT or [V6]:PORT (loopback)")
    parser.add_argument("--qname", default="example.com")
    parser.add_argument("--qtype", type=int, default=QTYPE_A)
    parser.add_argument("--rcode", type=int, default=0)
    parser.add_argument("--qps", type=float, default=5000.0)
    parser.add_argument("--tcp-rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--udp-sockets", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.spec:
        spec = LoadSpec(**json.loads(args.spec))
        started = time.monotonic()
        result = run_load(spec)
        print(json.dumps({"started": started, "result": result.as_json()}), flush=True)
        return 0 if result.clean else 1
    host, _, port = args.server.rpartition(":")
    spec = LoadSpec(
        host=host.strip("[]"),
        port=int(port),
        qname=args.qname,
        qtype=args.qtype,
        rcode=args.rcode,
        qps=args.qps,
        tcp_rate=args.tcp_rate,
        duration=args.duration,
        grace=args.grace,
        udp_sockets=args.udp_sockets,
    )
    result = run_load(spec)
    print(json.dumps(result.as_json()) if args.json else result.summary(), flush=True)
    return 0 if result.clean else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
