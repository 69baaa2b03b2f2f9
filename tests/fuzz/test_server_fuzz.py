"""Network fuzz: 100,000+ hostile packets at a running pygdnsd over UDP and TCP.

The daemon serves ``tests/data/diff/main`` on loopback. Throughout and at
the end: the process is alive, a valid query gets its correct answer within
1 s over UDP and TCP, and every response that comes back is well-formed
and answers the query it claims to. TCP also gets broken framing: zero
lengths, lengths past the data then close or half-close, byte-by-byte
dribbles, long pipelines, and hundreds of idle half-open connections.

Which queries the server answers at all is taken from an in-process
Responder on the same config: a dropped query must close its TCP
connection, never leave it hanging. A connection the server closes before
answering everything is counted and printed, not failed: gdnsd itself does
that to a few fuzz pipelines (after 34 answers), for reasons its docs do not
give.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ServerProcess
from fuzz.checks import MAIN_CONFIG, build_responder, check_response
from fuzz.mutator import PacketFuzzer, tcp_frame
from fuzz.network import (
    FINAL_READ_LIMIT,
    TCP_DEADLINE,
    UdpBlaster,
    probe_query,
    read_frames,
    send_ignoring_close,
    tcp_connect,
    tcp_probe,
    udp_probe,
    wait_closed,
)
from fuzz.seeding import fuzz_seed
from pygdnsd.engine.responder import Responder

UDP_PACKETS = 84_000
UDP_BATCH = 250
OVERSIZED_DATAGRAMS = (4096, 4097, 9000, 65000)
TCP_PIPELINED_PACKETS = 18_000
MAX_PIPELINE = 48
BROKEN_FRAMING_ROUNDS = 60
LONG_PIPELINE = 400
HALF_OPEN = 300
PROBE_EVERY = 10_000
SETTLE_QUIET = 0.05
# Wall-clock bound of each phase: loops stop here even if counts are not reached.
PHASE_SECONDS = 75.0
MIN_TOTAL = 100_000
LOCALHOST = b"\x7f\x00\x00\x01"
# Set to "gdnsd" to run the same fuzz at the reference daemon (it passes too).
SERVER_VARIABLE = "PYGDNSD_FUZZ_SERVER"


@dataclass
class Run:
    """Counts and problems of the whole run, for the final assertions and report."""

    server: ServerProcess
    expected: Responder
    seed: int
    packets: int = 0
    responses: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    probes: int = 0
    early_closes: int = 0  # TCP connections closed before the answers the Responder would give

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 15:
            self.problems.append(text)

    def answers(self, packet: bytes) -> bool:
        """Whether the server answers ``packet`` over TCP (the Responder's verdict)."""
        return bool(packet) and self.expected.respond(packet, LOCALHOST, True) is not None

    def check_health(self, when: str) -> None:
        proc = self.server.proc
        if proc is None or proc.poll() is not None:
            raise AssertionError(f"server died {when}; stderr:\n{self.server.stderr_text[-4000:]}")
        self.probes += 1
        qid = self.probes & 0xFFFF
        for kind, probe in (("UDP", udp_probe), ("TCP", tcp_probe)):
            failure = probe(self.server.address, qid)
            if failure is not None:
                self.problem(f"{kind} probe {when}: {failure}")


def _phase_deadline() -> float:
    return time.monotonic() + PHASE_SECONDS


def _udp_phase(run: Run, fuzzer: PacketFuzzer) -> None:
    blaster = UdpBlaster(run.server.address)
    expected_answers = 0
    try:
        deadline = _phase_deadline()
        sent = 0
        while sent < UDP_PACKETS and time.monotonic() < deadline:
            batch = [case.packet for case in fuzzer.cases(UDP_BATCH)]
            expected_answers += sum(
                run.expected.respond(packet, LOCALHOST, False) is not None for packet in batch
            )
            blaster.send_batch(batch)
            if sent // PROBE_EVERY != (sent + len(batch)) // PROBE_EVERY:
                # Let the server catch up first: a probe lost to a full socket
                # queue under load is not a stall; one unanswered by an idle server is.
                blaster.read(SETTLE_QUIET, FINAL_READ_LIMIT)
                run.check_health(f"after {sent + len(batch)} UDP packets")
            sent += len(batch)
        # Datagrams larger than the server reads: it must survive them too.
        blaster.send_batch(probe_query(7) + bytes(size - 29) for size in OVERSIZED_DATAGRAMS)
        blaster.read(0.2, FINAL_READ_LIMIT)
    finally:
        blaster.close()
    tally = blaster.tally
    run.packets += tally.sent
    run.responses += tally.received
    print(f"UDP: sent {tally.sent}, expected ~{expected_answers} answers, got {tally.received}")
    for text in tally.problems:
        run.problem(text)
    run.problem_count += tally.problem_count - len(tally.problems)
    # Loopback may drop datagrams under load, but not most of them: that is a stall.
    if tally.received < expected_answers // 2:
        run.problem(f"UDP: only {tally.received} answers for {expected_answers} answerable queries")


def _check_tcp_answers(run: Run, label: str, queries: list[bytes], frames: list[bytes]) -> None:
    run.responses += len(frames)
    for query, frame in zip(queries, frames, strict=False):
        try:
            check_response(frame, True, query)
        except Exception as problem:
            run.problem(f"{label}: bad TCP answer {frame.hex()} to {query.hex()}: {problem}")
            return


def _exchange(run: Run, label: str, queries: list[bytes], wire: bytes | None = None) -> None:
    """Send ``queries`` pipelined on one connection; answers must come in order, up to the
    first query the server drops, after which the connection must close."""
    answered = 0
    for query in queries:
        if not run.answers(query):
            break
        answered += 1
    run.packets += len(queries)
    with tcp_connect(run.server.address) as sock:
        send_ignoring_close(sock, wire if wire is not None else b"".join(map(tcp_frame, queries)))
        deadline = time.monotonic() + TCP_DEADLINE
        frames, how = read_frames(sock, answered, deadline) if answered else ([], "complete")
        _check_tcp_answers(run, label, queries, frames)
        if how == "closed" and len(frames) < answered:
            run.early_closes += 1
            if run.early_closes <= 3:
                print(f"{label}: closed after {len(frames)} of {answered}; next {queries[len(frames)].hex()}")
        if how == "timeout":
            run.problem(f"{label}: stalled after {len(frames)} of {answered} answers: {queries[len(frames)].hex()}")
        elif answered < len(queries) and how == "complete" and not wait_closed(sock, deadline):
            run.problem(f"{label}: connection left open after dropping {queries[answered].hex()}")


def _tcp_phase(run: Run, fuzzer: PacketFuzzer, rng: random.Random) -> None:
    before = (run.packets, run.responses)
    deadline = _phase_deadline()
    sent = 0
    while sent < TCP_PIPELINED_PACKETS and time.monotonic() < deadline:
        # A query the server drops closes the connection: at most one, last, so
        # every other query of the pipeline is answered.
        cases = []
        dropped = []
        for case in fuzzer.cases(rng.randint(1, MAX_PIPELINE)):
            (cases if run.answers(case.packet) else dropped).append(case)
        if dropped and rng.random() < 0.5:
            cases.append(dropped[0])
        if not cases:
            continue
        kinds = ",".join(sorted({case.kind for case in cases}))
        _exchange(run, f"pipeline of {len(cases)} ({kinds})", [case.packet for case in cases])
        if sent // PROBE_EVERY != (sent + len(cases)) // PROBE_EVERY:
            run.check_health(f"after {sent + len(cases)} TCP packets")
        sent += len(cases)
    print(
        f"TCP pipelines: sent {run.packets - before[0]}, got {run.responses - before[1]} answers,"
        f" {run.early_closes} connections closed early"
    )


def _valid_cases(fuzzer: PacketFuzzer, count: int) -> list[bytes]:
    return [fuzzer.valid_query() for _ in range(count)]


def _broken_framing(run: Run, fuzzer: PacketFuzzer, rng: random.Random) -> None:
    address = run.server.address
    for round_number in range(BROKEN_FRAMING_ROUNDS):
        valid = _valid_cases(fuzzer, rng.randint(1, 4))
        label = f"framing round {round_number}"
        # A zero-length frame after some queries: those are answered, then the connection closes.
        _exchange(run, f"{label}: zero length", [*valid, b""], b"".join(map(tcp_frame, valid)) + b"\x00\x00")
        # A length past the data, then the client closes (politely or with a reset).
        with tcp_connect(address) as sock:
            if rng.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            send_ignoring_close(sock, tcp_frame(valid[0]) + struct.pack("!H", 300) + valid[0][:20])
            run.packets += 2
        # A length past the data, then a half-close: answer what is complete, then close.
        with tcp_connect(address) as sock:
            send_ignoring_close(sock, tcp_frame(valid[0]) + struct.pack("!H", 300) + valid[0][:20])
            sock.shutdown(socket.SHUT_WR)
            run.packets += 2
            frames, _ = read_frames(sock, 1, time.monotonic() + TCP_DEADLINE)
            _check_tcp_answers(run, f"{label}: half-close", valid[:1], frames)
            if len(frames) != 1:
                run.problem(f"{label}: no answer before a half-close")
            if not wait_closed(sock, time.monotonic() + TCP_DEADLINE):
                run.problem(f"{label}: connection left open after the client's half-close")
        # One query dribbled a byte at a time.
        with tcp_connect(address) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in tcp_frame(valid[-1]):
                sock.send(bytes((byte,)))
            run.packets += 1
            frames, how = read_frames(sock, 1, time.monotonic() + TCP_DEADLINE)
            _check_tcp_answers(run, f"{label}: dribbled", valid[-1:], frames)
            if how != "complete":
                run.problem(f"{label}: dribbled query not answered ({how})")
    _exchange(run, "long pipeline", _valid_cases(fuzzer, LONG_PIPELINE))


@contextlib.contextmanager
def _half_open(run: Run, rng: random.Random) -> Iterator[list[socket.socket]]:
    """Connections that send nothing, one byte, or half a frame, and stay open."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(HALF_OPEN):
            sock = tcp_connect(run.server.address)
            sockets.append(sock)
            start = rng.choice((b"", b"\x00", b"\x00\x40\x12\x34"))
            if start:
                sock.send(start)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_server_survives_fuzz_over_udp_and_tcp(
    server_factory: Callable[[str, Path], ServerProcess], tmp_path: Path
) -> None:
    seed = fuzz_seed()
    expected, questions = build_responder(tmp_path / "expected")
    server = server_factory(os.environ.get(SERVER_VARIABLE, "pygdnsd"), MAIN_CONFIG)
    run = Run(server, expected, seed)
    fuzzer = PacketFuzzer(seed, questions)
    rng = random.Random(seed ^ 0x5EED)
    started = time.monotonic()
    with _half_open(run, rng):
        run.check_health("with half-open connections")
        _udp_phase(run, fuzzer)
        _tcp_phase(run, fuzzer, rng)
        _broken_framing(run, fuzzer, rng)
        run.check_health("after the fuzz, half-open connections still open")
    run.check_health("at the end")
    elapsed = time.monotonic() - started
    print(f"seed {seed}: {run.packets} packets, {run.responses} responses checked, {elapsed:.1f} s")
    log = server.stderr_text
    assert "Traceback" not in log and "error answering" not in log, log[-4000:]
    assert not run.problems, f"seed {seed}: {run.problem_count} problems:\n" + "\n".join(run.problems)
    assert run.packets >= MIN_TOTAL
