"""Loopback clients for the network fuzz: a paced UDP blaster, TCP exchanges, health probes.

Every wait is bounded; every socket is closed by its user. Only loopback
addresses are ever used (the server's address comes from the fixture).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from fuzz.checks import check_response
from fuzz.mutator import A, header, tcp_frame, wire_name
from fuzz.strict import parse_message

RECV_SIZE = 65535
# After a batch, read answers until the server has been quiet this long.
QUIET_SECONDS = 0.005
BATCH_READ_LIMIT = 0.25
FINAL_READ_LIMIT = 2.0
# Answers may trail their queries by a few batches; IDs repeat only every 65536.
RECENT_BATCHES = 40
TCP_DEADLINE = 3.0
PROBE_TIMEOUT = 1.0
PROBE_NAME = "www.example.com"
PROBE_ADDRESSES = {bytes((192, 0, 2, n)) for n in (10, 11, 12)}


@dataclass
class UdpTally:
    sent: int = 0
    received: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str, limit: int = 10) -> None:
        self.problem_count += 1
        if len(self.problems) < limit:
            self.problems.append(text)


class UdpBlaster:
    """Sends batches of datagrams from one socket and checks every answer that comes back.

    Answers are matched to queries by ID among the ones sent recently (IDs
    repeat across a long run, so only recent queries are candidates).
    """

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.connect(address)
        self.sock.setblocking(False)
        self.tally = UdpTally()
        self._recent: list[dict[bytes, list[bytes]]] = [{} for _ in range(RECENT_BATCHES)]

    def close(self) -> None:
        self.sock.close()

    def send_batch(self, packets: Iterable[bytes]) -> None:
        batch: dict[bytes, list[bytes]] = {}
        for packet in packets:
            self._send(packet)
            if len(packet) >= 2:
                batch.setdefault(packet[:2], []).append(packet)
        self._recent = [*self._recent[1:], batch]
        self.read(QUIET_SECONDS, BATCH_READ_LIMIT)

    def _send(self, packet: bytes) -> None:
        for _ in range(100):
            try:
                self.sock.send(packet)
            except BlockingIOError:
                select.select([], [self.sock], [], 0.01)
                continue
            except ConnectionRefusedError:
                # An ICMP error for an earlier datagram: the server's port is gone.
                self.tally.problem("connection refused: the server stopped listening")
                return
            self.tally.sent += 1
            return
        self.tally.problem("send buffer stayed full for a second")

    def read(self, quiet: float, limit: float) -> None:
        """Check answers until none came for ``quiet`` seconds, or ``limit`` passed."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], quiet)
            if not ready:
                return
            for _ in range(1000):
                try:
                    response = self.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    self.tally.problem("connection refused: the server stopped listening")
                    return
                self.tally.received += 1
                self._check(response)

    def _check(self, response: bytes) -> None:
        key = response[:2]
        candidates = [q for batch in reversed(self._recent) for q in batch.get(key, ())]
        if not candidates:
            self.tally.problem(f"answer with an ID no recent query had: {response.hex()}")
            return
        failures = []
        for query in candidates:
            try:
                check_response(response, False, query)
                return
            except Exception as problem:
                failures.append(f"{type(problem).__name__}: {problem}")
        self.tally.problem(
            f"bad UDP answer {response.hex()} to query {candidates[0].hex()}: {failures[0]}"
        )


def read_frames(sock: socket.socket, wanted: int, deadline: float) -> tuple[list[bytes], str]:
    """Up to ``wanted`` length-prefixed messages, and how reading ended:
    "complete", "closed" (EOF or reset) or "timeout"."""
    buf = b""
    frames: list[bytes] = []
    while len(frames) < wanted:
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
            size = struct.unpack_from("!H", buf)[0]
            frames.append(buf[2 : 2 + size])
            buf = buf[2 + size :]
            if len(frames) == wanted:
                return frames, "complete"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return frames, "timeout"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(RECV_SIZE)
        except TimeoutError:
            return frames, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return frames, "closed"
        if not chunk:
            return frames, "closed"
        buf += chunk
    return frames, "complete"


def wait_closed(sock: socket.socket, deadline: float) -> bool:
    """True once the peer closed (EOF or reset); False if it still had not by ``deadline``."""
    _, how = read_frames(sock, 1 << 30, deadline)
    return how == "closed"


def tcp_connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=TCP_DEADLINE)


def send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    """Send what the server will take; it may close early (a dropped query closes a TCP connection)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def probe_query(qid: int) -> bytes:
    return header(qid) + wire_name(PROBE_NAME) + struct.pack("!HH", A, 1)


def probe_answer_problem(qid: int, response: bytes | None) -> str | None:
    """Why ``response`` is not the right answer to the probe (None if it is)."""
    if response is None:
        return f"no answer to the probe within {PROBE_TIMEOUT} s"
    try:
        message = parse_message(response)
    except ValueError as bad:
        return f"probe answer malformed: {bad}"
    if message.qid != qid or message.rcode != 0:
        return f"probe answer has ID {message.qid} (want {qid}), rcode {message.rcode}"
    addresses = {r.rdata for r in message.answer if r.rtype == A}
    if addresses != PROBE_ADDRESSES:
        return f"probe answer has addresses {addresses}"
    return None


def udp_probe(address: tuple[str, int], qid: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.connect(address)
        sock.send(probe_query(qid))
        try:
            response: bytes | None = sock.recv(RECV_SIZE)
        except (TimeoutError, ConnectionRefusedError):
            response = None
    return probe_answer_problem(qid, response)


def tcp_probe(address: tuple[str, int], qid: int) -> str | None:
    try:
        with socket.create_connection(address, timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(tcp_frame(probe_query(qid)))
            frames, _ = read_frames(sock, 1, time.monotonic() + PROBE_TIMEOUT)
    except OSError as failed:
        return f"TCP probe failed: {failed}"
    return probe_answer_problem(qid, frames[0] if frames else None)
