"""The inter-daemon takeover conversation (ControlSocket.md): the new daemon's end, and what both share.

The steps, one connection, the new daemon's PID in every request, are told in
the ``replace`` package's docstring. ``TakeoverClient`` speaks them for the
new daemon; the old daemon's end is ``old_daemon.serve_takeover``.

Deviations from gdnsd 3.8.1, and why:

* The TAKE ACK carries ``d`` bytes of JSON describing each descriptor (role,
  and the SocketSpec of each DNS socket) plus the old daemon's start time and
  WatchdogSec; gdnsd sends ``d = 0`` and finds out what each socket is with
  getsockname. The description also lets the receiver check each socket is
  what it claims (``fd_passing.adopt``). A gdnsd peer would not understand our
  TAKE ACK, and we would not understand its: mixed takeovers fail cleanly
  at TAKE and the old daemon resumes (gdnsd's own behaviour on failure).
* The new daemon does its slow work (config, zones) *before* TAK1, not between
  TAK1 and TAKE as gdnsd does, so the old daemon is in its LATR mode for
  milliseconds rather than for a whole zone load.
* The old daemon keeps answering on its DNS sockets between TAKE and STOP, as
  gdnsd does: both processes read the same kernel sockets, each datagram
  goes to one reader, nothing is lost. Pausing the old reader at TAKE would
  leave queries queued until the new daemon starts its threads and, at 5k qps,
  risk overflowing a default-sized receive buffer.
* PSH_SHAND counters follow ``STATS_ORDER`` (ours), not gdnsd's statio enum.

If the new daemon vanishes or stalls at any step before STOP, the old one
resumes accepting control connections and carries on (``takeover_failed``).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pygdnsd.control import protocol
from pygdnsd.control.deadline_read import ReadStopped, read_exactly
from pygdnsd.control.protocol import RequestKey, ResponseKey
from pygdnsd.engine.stats import DNS_COUNTERS, TCP_COUNTERS, UDP_COUNTERS
from pygdnsd.errors import GdnsdError
from pygdnsd.replace import fd_passing
from pygdnsd.replace.fd_passing import HandedOver

log = logging.getLogger(__name__)

DEFAULT_STEP_TIMEOUT = 30.0
MAX_HANDOFF_FDS = 4096
_MAX_METADATA = 16 << 20

# Order of the counters in PSH_SHAND: new counters are only ever appended.
STATS_ORDER: tuple[tuple[str, str], ...] = (
    *(("stats", name) for name in DNS_COUNTERS),
    *(("udp", name) for name in UDP_COUNTERS),
    *(("tcp", name) for name in TCP_COUNTERS),
)


class TakeoverError(GdnsdError):
    """The takeover failed at some step; the message says which."""


class TakeoverRefused(TakeoverError):
    """The old daemon said no (``response`` is its key: LATR means another replace is running)."""

    def __init__(self, message: str, response: int) -> None:
        super().__init__(message)
        self.response = response


def counters_from_snapshot(snapshot: Mapping[str, Mapping[str, int]]) -> list[int]:
    return [int(snapshot.get(group, {}).get(name, 0)) for group, name in STATS_ORDER]


def snapshot_from_counters(counters: Sequence[int]) -> dict[str, dict[str, int]]:
    """The inverse; extra counters from a newer peer are ignored, missing ones are 0."""
    out: dict[str, dict[str, int]] = {"stats": {}, "udp": {}, "tcp": {}}
    for (group, name), value in zip(STATS_ORDER, counters, strict=False):
        out[group][name] = value
    return out


# --- the new daemon's end ---------------------------------------------------------


@dataclass
class TakenOver:
    """The old daemon's sockets (owned by the receiver) and its metadata."""

    handed: HandedOver
    extra: dict[str, Any] = field(default_factory=dict)


class TakeoverClient:
    """The new daemon's side over a connected control socket; every step is bounded."""

    def __init__(self, sock: socket.socket, pid: int, step_timeout: float = DEFAULT_STEP_TIMEOUT) -> None:
        self.sock = sock
        self.pid = pid
        self.step_timeout = step_timeout
        self.old_pid: int | None = None

    @classmethod
    def connect(cls, path: str, pid: int, step_timeout: float = DEFAULT_STEP_TIMEOUT) -> TakeoverClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(step_timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise TakeoverError(f"cannot connect to the control socket {path}: {exc.strerror or exc}") from exc
        return cls(sock, pid, step_timeout)

    def close(self) -> None:
        self.sock.close()

    def _recv_exact(self, size: int, deadline: float, what: str) -> bytes:
        try:
            return read_exactly(self.sock, size, deadline)
        except ReadStopped as stop:
            if stop.timed_out:
                raise TakeoverError(f"timed out waiting for {what}") from stop
            raise TakeoverError(f"the old daemon closed the connection before {what}") from stop
        except OSError as exc:
            raise TakeoverError(f"connection failed waiting for {what}: {exc.strerror or exc}") from exc

    def _request(self, request: protocol.Request) -> protocol.Header:
        name = protocol.key_name(request.key)
        try:
            self.sock.settimeout(self.step_timeout)
            self.sock.sendall(request.encode())
        except OSError as exc:
            raise TakeoverError(f"sending {name} failed: {exc.strerror or exc}") from exc
        deadline = time.monotonic() + self.step_timeout
        header = protocol.decode_header(self._recv_exact(protocol.HEADER_SIZE, deadline, f"the answer to {name}"))
        if header.key != ResponseKey.ACK:
            raise TakeoverRefused(
                f"the old daemon answered {name} with {protocol.key_name(header.key)}", header.key
            )
        return header

    def info(self) -> tuple[tuple[int, int, int], int]:
        header = self._request(protocol.info_request(protocol.COMPAT_VERSION))
        self.old_pid = header.d
        return header.version, header.d

    def announce(self) -> None:
        """REQ_TAK1: lock the old daemon onto us."""
        self._request(protocol.takeover_request(RequestKey.TAK1, self.pid))

    def challenges(self) -> list[protocol.ChallengeBatch]:
        """REQ_TAK2: the live ACME challenges, each batch with its whole seconds left."""
        header = self._request(protocol.takeover_request(RequestKey.TAK2, self.pid))
        if header.d > protocol.MAX_RESPONSE_PAYLOAD:
            raise TakeoverError(f"challenge hand-off of {header.d} bytes is over the limit")
        data = self._recv_exact(header.d, time.monotonic() + self.step_timeout, "the challenges")
        try:
            return protocol.decode_challenge_handoff(header.count, data)
        except protocol.ProtocolError as exc:
            raise TakeoverError(f"bad challenge hand-off: {exc}") from exc

    def take(self) -> TakenOver:
        """REQ_TAKE: the lock, the control listeners and every DNS socket, owned by us after this."""
        request = protocol.takeover_request(RequestKey.TAKE, self.pid)
        try:
            self.sock.sendall(request.encode())
            raw_header, fds = fd_passing.recv_with_fds(
                self.sock, protocol.HEADER_SIZE, MAX_HANDOFF_FDS, self.step_timeout
            )
        except OSError as exc:
            raise TakeoverError(f"REQ_TAKE failed: {exc}") from exc
        try:
            header = protocol.decode_header(raw_header)
            if header.key != ResponseKey.ACK:
                raise TakeoverRefused(
                    f"the old daemon answered REQ_TAKE with {protocol.key_name(header.key)}", header.key
                )
            if header.d > _MAX_METADATA or header.count > MAX_HANDOFF_FDS:
                raise TakeoverError(f"REQ_TAKE answer claims {header.count} fds, {header.d} bytes")
            raw, more = fd_passing.recv_with_fds(
                self.sock, header.d, header.count - len(fds), self.step_timeout
            )
            fds.extend(more)
            if len(fds) != header.count:
                raise TakeoverError(f"{len(fds)} descriptors arrived, {header.count} announced")
            descriptions, extra = fd_passing.decode_descriptions(raw)
        except BaseException:
            fd_passing.close_fds(fds)
            raise
        return TakenOver(fd_passing.adopt(descriptions, fds), extra)

    def stop_old(self, timeout: float | None = None) -> dict[str, dict[str, int]]:
        """REQ_STOP, then the old daemon's final counters (PSH_SHAND), then its exit (EOF).

        Past the point of no return: the caller logs a failure and carries on.
        """
        self._request(protocol.plain_request(RequestKey.STOP))
        deadline = time.monotonic() + (self.step_timeout if timeout is None else timeout)
        header = protocol.decode_header(
            self._recv_exact(protocol.HEADER_SIZE, deadline, "the final stats")
        )
        if header.key != protocol.PSH_SHAND or header.d > _MAX_METADATA:
            raise TakeoverError(f"expected PSH_SHAND, got {protocol.key_name(header.key)}")
        data = self._recv_exact(header.d, deadline, "the final stats")
        try:
            counters = protocol.decode_stats_handoff(data)
        except protocol.ProtocolError as exc:
            raise TakeoverError(f"bad stats hand-off: {exc}") from exc
        self._wait_eof(deadline)
        return snapshot_from_counters(counters)

    def _wait_eof(self, deadline: float) -> None:
        for _ in range(1_000):  # each round either returns or waits the remaining time
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sock.settimeout(remaining)
            try:
                if not self.sock.recv(4096):
                    return
            except TimeoutError:
                break
            except OSError:
                return  # reset: the old daemon is gone all the same
        raise TakeoverError("the old daemon did not exit after its final stats")
