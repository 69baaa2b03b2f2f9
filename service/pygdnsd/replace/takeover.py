"""The inter-daemon takeover conversation (ControlSocket.md): the new daemon's end, and what both share.

The steps, one connection, the new daemon's PID in every request, are told in
the ``replace`` package's docstring. ``TakeoverClient`` speaks them for the
new daemon; the old daemon's end is ``old_daemon.serve_takeover``.

Either end may be gdnsd 3.8.1 or pygdnsd, and each speaks to the other
exactly as gdnsd 3.8.1 does, as learned by running it (strace, and small
clients and servers of our own in its place):

* REQ_INFO: ``v`` the client's version, ``d`` 0; ACK ``v`` 3.8.1, ``d`` the PID.
* REQ_TAK1 ``d`` = PID: ACK 0/0. gdnsd ignores TAK1's ``v`` (measured).
* REQ_TAK2: ACK ``v`` = number of challenge batches (one per REQ_CHAL), ``d``
  bytes of them, each with its seconds left (``protocol.encode_challenge_handoff``).
* REQ_TAKE: ACK ``v`` = descriptor count, ``d`` 0, with every descriptor in
  SCM_RIGHTS on the header's bytes: the lock, the control listener, the DNS
  sockets. No description: the receiver identifies each socket from the
  socket itself (``fd_passing.adopt``). ``tcp_control`` listeners are not
  handed over; the new daemon binds its own beside the old (SO_REUSEPORT).
* REQ_STOP: ACK, then PSH_SHAND (``stats_handoff``: gdnsd's counter order, the
  start time last), then the old daemon exits.

Between two pygdnsd daemons a little more travels, and only then: the new
daemon marks its REQ_TAK1 with ``v`` = ('p', 0, level) (``PYGDNSD_MARK``);
a pygdnsd old daemon answers the ACK with the same mark, a gdnsd one with
zeros. Marked, the TAKE ACK's ``d`` bytes of JSON carry the old daemon's
systemd watchdog interval and which sockets systemd activated, and its
``tcp_control`` listeners follow the DNS sockets (connections waiting in
them are served by the new daemon rather than reset when the old exits).
A gdnsd peer never sees any of it.

Deviations from gdnsd 3.8.1's own daemon, and why:

* The new daemon does its slow work (config, zones) *before* TAK1, not between
  TAK1 and TAKE as gdnsd does, so the old daemon is in its LATR mode for
  milliseconds rather than for a whole zone load.
* A gdnsd old daemon SIGKILLs a new daemon that closes the takeover
  connection before STOP; a pygdnsd old daemon lets it go (it is leaving).

If the new daemon vanishes or stalls at any step before STOP, the old one
resumes accepting control connections and carries on (``takeover_failed``).
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pygdnsd.control import protocol
from pygdnsd.control.deadline_read import ReadStopped, read_exactly
from pygdnsd.control.protocol import RequestKey, ResponseKey
from pygdnsd.errors import GdnsdError
from pygdnsd.replace import fd_passing, stats_handoff
from pygdnsd.replace.fd_passing import Expected, HandedOver

log = logging.getLogger(__name__)

DEFAULT_STEP_TIMEOUT = 30.0
MAX_HANDOFF_FDS = 4096
_MAX_METADATA = 16 << 20

# The takeover protocol is gdnsd 3's: a peer of another major version speaks another.
SUPPORTED_MAJOR = 3
# REQ_TAK1's v (and its ACK's) between two pygdnsd daemons: ('p', 0, level).
PYGDNSD_MARK = ord("p")
PYGDNSD_LEVEL = 1


class Peer(enum.Enum):
    """Which form the other end speaks."""

    GDNSD = "gdnsd"  # gdnsd 3.8.1's, or a pygdnsd speaking as it would to one
    PYGDNSD = "pygdnsd"  # the same plus our additions (see the module docstring)


def marked(header: protocol.Header) -> bool:
    """A REQ_TAK1 or its ACK carries the pygdnsd mark."""
    return header.v0 == PYGDNSD_MARK and header.v2 >= 1


def tak1_request(pid: int) -> protocol.Request:
    """REQ_TAK1 as pygdnsd sends it: gdnsd's, with the mark in ``v`` (gdnsd ignores it)."""
    return protocol.Request(protocol.Header(RequestKey.TAK1, PYGDNSD_MARK, 0, PYGDNSD_LEVEL, pid))


def tak1_ack(peer: Peer) -> protocol.Response:
    if peer is Peer.PYGDNSD:
        return protocol.Response(protocol.Header(ResponseKey.ACK, PYGDNSD_MARK, 0, PYGDNSD_LEVEL))
    return protocol.response(ResponseKey.ACK)


def encode_extra(extra: dict[str, Any]) -> bytes:
    """The JSON a pygdnsd old daemon sends a pygdnsd new one with its TAKE ACK."""
    return json.dumps(extra, separators=(",", ":")).encode("utf-8")


def decode_extra(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise TakeoverError(f"the TAKE answer's data is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise TakeoverError("the TAKE answer's data is not a JSON object")
    return body


class TakeoverError(GdnsdError):
    """The takeover failed at some step; the message says which."""


class TakeoverMismatch(TakeoverError):
    """The old daemon speaks a takeover we do not: abort, never overlap it."""


class TakeoverRefused(TakeoverError):
    """The old daemon said no (``response`` is its key: LATR means another replace is running)."""

    def __init__(self, message: str, response: int) -> None:
        super().__init__(message)
        self.response = response


# --- the new daemon's end ---------------------------------------------------------


@dataclass
class TakenOver:
    """The old daemon's sockets (owned by the receiver), and what a pygdnsd old daemon adds."""

    handed: HandedOver
    extra: dict[str, Any] = field(default_factory=dict)


class TakeoverClient:
    """The new daemon's side over a connected control socket; every step is bounded."""

    def __init__(self, sock: socket.socket, pid: int, step_timeout: float = DEFAULT_STEP_TIMEOUT) -> None:
        self.sock = sock
        self.pid = pid
        self.step_timeout = step_timeout
        self.old_pid: int | None = None
        self.old_version: tuple[int, int, int] | None = None
        self.peer = Peer.GDNSD  # until the TAK1 ACK says otherwise

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

    @property
    def old_kind(self) -> str:
        """The old daemon as logs name it."""
        version = ".".join(map(str, self.old_version)) if self.old_version else "?"
        return f"{self.peer.value} {version}" if self.peer is Peer.PYGDNSD else f"gdnsd {version}"

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
        """REQ_INFO: the old daemon's version and PID; refuses a takeover protocol we do not speak."""
        header = self._request(protocol.info_request(protocol.COMPAT_VERSION))
        self.old_pid = header.d
        self.old_version = header.version
        if header.v0 != SUPPORTED_MAJOR:
            version = ".".join(map(str, header.version))
            raise TakeoverMismatch(
                f"the old daemon (PID {header.d}) reports version {version}, whose takeover this daemon "
                f"does not speak (it speaks gdnsd {SUPPORTED_MAJOR}.x's); nothing was taken over"
            )
        return header.version, header.d

    def announce(self) -> None:
        """REQ_TAK1: lock the old daemon onto us; its ACK says which form it speaks."""
        header = self._request(tak1_request(self.pid))
        self.peer = Peer.PYGDNSD if marked(header) else Peer.GDNSD

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

    def take(self, expected: Expected) -> TakenOver:
        """REQ_TAKE: the lock, the control listener and every DNS socket, owned by us after this.

        Each descriptor is checked to be what ``expected`` allows; any other
        refuses the hand-off here, before STOP, and the old daemon serves on.
        """
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
            if header.d and self.peer is not Peer.PYGDNSD:
                raise TakeoverMismatch(
                    f"the old daemon ({self.old_kind}) answered REQ_TAKE with {header.d} bytes of data, "
                    "which gdnsd 3.8.1 never sends: it speaks another takeover"
                )
            if header.d > _MAX_METADATA or header.count > MAX_HANDOFF_FDS:
                raise TakeoverError(f"REQ_TAKE answer claims {header.count} fds, {header.d} bytes")
            raw, more = fd_passing.recv_with_fds(
                self.sock, header.d, header.count - len(fds), self.step_timeout
            )
            fds.extend(more)
            if len(fds) != header.count:
                raise TakeoverError(f"{len(fds)} descriptors arrived, {header.count} announced")
            extra = decode_extra(raw) if raw else {}
        except BaseException:
            fd_passing.close_fds(fds)
            raise
        return TakenOver(fd_passing.adopt(fds, expected), extra)

    def stop_old(self, timeout: float | None = None) -> stats_handoff.FinalStats:
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
            final = stats_handoff.decode(protocol.decode_stats_handoff(data))
        except protocol.ProtocolError as exc:
            raise TakeoverError(f"bad stats hand-off: {exc}") from exc
        self._wait_eof(deadline)
        return final

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
