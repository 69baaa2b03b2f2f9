"""Passing open descriptors to another process over a unix stream socket (SCM_RIGHTS).

A replace hands the *same* kernel sockets to the new daemon: whatever is
queued in them (UDP datagrams, TCP connections waiting in the accept queue)
is read by whoever reads next, so nothing is lost (handoff-facts.md).

Two layers:

* ``send_with_fds``/``recv_with_fds``: bytes plus descriptors, exactly
  ``size`` bytes read (never past the end of the message), descriptors made
  close-on-exec as they arrive (MSG_CMSG_CLOEXEC), at most
  ``MAX_FDS_PER_SENDMSG`` per sendmsg (the kernel's SCM_MAX_FD is 253).
  Any error, including truncated ancillary data (MSG_CTRUNC), closes every
  descriptor received so far: a stray copy of a DNS socket kept alive by
  mistake would black-hole its share of the traffic.
* ``FdDescription``/``adopt``: what each descriptor is (the instance lock,
  the control listener, a DNS socket, a ``tcp_control`` or an ``http_listen``
  listener with its SocketSpec), encoded as
  JSON, and turning received descriptors into checked Python objects.
"""

from __future__ import annotations

import array
import contextlib
import enum
import ipaddress
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pygdnsd.control.deadline_read import ReadStopped, read_exactly
from pygdnsd.errors import GdnsdError
from pygdnsd.transport.listeners import TCP, UDP, ListenSocket, SocketSpec

MAX_FDS_PER_SENDMSG = 250
_INT_SIZE = array.array("i").itemsize


class FdPassError(GdnsdError):
    """Descriptors could not be passed or did not match their description."""


def close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# --- bytes + descriptors ----------------------------------------------------------


def send_with_fds(sock: socket.socket, data: bytes, fds: Sequence[int]) -> None:
    """Send ``data`` with ``fds`` attached; the receiver must know ``len(data)``.

    Descriptors beyond one sendmsg's worth ride on the following bytes, one
    byte per batch, so the data must be at least as long as the batch count.
    """
    batches = [list(fds[i : i + MAX_FDS_PER_SENDMSG]) for i in range(0, len(fds), MAX_FDS_PER_SENDMSG)]
    if len(batches) > len(data):
        raise FdPassError(f"{len(fds)} descriptors need at least {len(batches)} bytes of data")
    try:
        pos = 0
        for number, batch in enumerate(batches):
            last = number == len(batches) - 1
            piece = data[pos:] if last else data[pos : pos + 1]
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", batch))]
            sent = sock.sendmsg([piece], ancillary)
            if sent == 0:
                raise FdPassError("peer closed the connection while descriptors were sent")
            # The descriptors went with the first byte; the rest is plain data.
            # (An empty send to a peer that has gone fails with EPIPE: skip it.)
            if sent < len(piece):
                sock.sendall(piece[sent:])
            pos += len(piece)
        if pos < len(data):
            sock.sendall(data[pos:])
    except OSError as exc:
        raise FdPassError(f"sending {len(fds)} descriptors failed: {exc.strerror or exc}") from exc


def _fds_from(ancillary: list[tuple[int, int, bytes]]) -> tuple[list[int], bool]:
    """Descriptors in SCM_RIGHTS messages, and whether anything else (unexpected) came."""
    fds: list[int] = []
    unexpected = False
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _INT_SIZE
            fds.extend(array.array("i", payload[:usable]))
            unexpected |= usable != len(payload)
        else:
            unexpected = True
    return fds, unexpected


def recv_with_fds(
    sock: socket.socket, size: int, max_fds: int, timeout: float
) -> tuple[bytes, list[int]]:
    """Read exactly ``size`` bytes and every descriptor sent with them (at most ``max_fds``).

    The caller owns the returned descriptors. On any error all of them are closed.
    """
    ancillary_space = socket.CMSG_SPACE(MAX_FDS_PER_SENDMSG * _INT_SIZE)
    fds: list[int] = []

    def receive(wanted: int) -> bytes:
        chunk, ancillary, flags, _ = sock.recvmsg(wanted, ancillary_space, socket.MSG_CMSG_CLOEXEC)
        got, unexpected = _fds_from(ancillary)
        fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            raise FdPassError("descriptors were truncated in transit (MSG_CTRUNC)")
        if unexpected:
            raise FdPassError("unexpected ancillary data arrived with the descriptors")
        if len(fds) > max_fds:
            raise FdPassError(f"peer sent {len(fds)} descriptors, at most {max_fds} expected")
        return chunk

    try:
        data = read_exactly(sock, size, time.monotonic() + timeout, receive)
    except ReadStopped as stop:
        close_fds(fds)
        if stop.timed_out:
            raise FdPassError(f"timed out after {stop.received} of {size} bytes with descriptors") from stop
        raise FdPassError(f"connection closed after {stop.received} of {size} bytes") from stop
    except OSError as exc:
        close_fds(fds)
        raise FdPassError(f"receiving descriptors failed: {exc.strerror or exc}") from exc
    except BaseException:
        close_fds(fds)
        raise
    return data, fds


# --- what each descriptor is ------------------------------------------------------


class FdRole(enum.Enum):
    LOCK = "lock"  # the flock'ed run_dir/control.lock: the lock travels with it
    CONTROL = "control"  # the control socket listener
    DNS = "dns"  # a DNS listening socket (spec says which)
    TCP_CONTROL = "tcp_control"  # a tcp_control listener (spec: its address, TCP, index 0)
    HTTP = "http"  # an http_listen listener of the status page (spec: as TCP_CONTROL's)


# The roles whose descriptors are bound sockets described by a SocketSpec.
_WITH_SPEC = frozenset({FdRole.DNS, FdRole.TCP_CONTROL, FdRole.HTTP})


@dataclass(frozen=True)
class FdDescription:
    role: FdRole
    spec: SocketSpec | None = None

    def __post_init__(self) -> None:
        if (self.role in _WITH_SPEC) != (self.spec is not None):
            raise FdPassError(f"{self.role.value} descriptor: a spec goes with DNS, TCP control and HTTP sockets only")

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role.value}
        if self.spec is not None:
            spec = self.spec
            out["spec"] = {
                "host": spec.host,
                "port": spec.port,
                "family": int(spec.family),
                "kind": spec.kind,
                "index": spec.index,
            }
        return out


def _spec_from_json(raw: Any) -> SocketSpec:
    try:
        host, port, family = str(raw["host"]), raw["port"], raw["family"]
        kind, index = raw["kind"], raw["index"]
        ipaddress.ip_address(host)
    except (KeyError, TypeError, ValueError) as exc:
        raise FdPassError(f"bad socket description {raw!r}") from exc
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (port, family, index))
        or kind not in (UDP, TCP)
        or family not in (socket.AF_INET, socket.AF_INET6)
    ):
        raise FdPassError(f"bad socket description {raw!r}")
    return SocketSpec(host, port, socket.AddressFamily(family), kind, index)


def encode_descriptions(descriptions: Sequence[FdDescription], extra: dict[str, Any]) -> bytes:
    """JSON: ``{"fds": [...], **extra}``; ``extra`` carries anything else (uptime, ...)."""
    if "fds" in extra:
        raise FdPassError("'fds' is reserved in the hand-off metadata")
    body = {"fds": [d.as_json() for d in descriptions], **extra}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode_descriptions(raw: bytes) -> tuple[list[FdDescription], dict[str, Any]]:
    try:
        body = json.loads(raw)
        items = body.pop("fds")
        if not isinstance(items, list):
            raise TypeError("fds is not a list")
        descriptions = []
        for item in items:
            role = FdRole(item["role"])
            spec = _spec_from_json(item["spec"]) if role in _WITH_SPEC else None
            descriptions.append(FdDescription(role, spec))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FdPassError(f"hand-off metadata is malformed: {exc}") from exc
    return descriptions, body


# --- turning descriptors into objects ----------------------------------------------


@dataclass
class HandedOver:
    """What a previous daemon handed over; the receiver owns it all (``close`` frees it)."""

    lock_fd: int | None = None
    control: socket.socket | None = None
    dns: list[ListenSocket] = field(default_factory=list)
    tcp_control: list[ListenSocket] = field(default_factory=list)
    http: list[ListenSocket] = field(default_factory=list)

    def close(self) -> None:
        if self.lock_fd is not None:
            close_fds([self.lock_fd])
            self.lock_fd = None
        if self.control is not None:
            self.control.close()
            self.control = None
        for listener in [*self.dns, *self.tcp_control, *self.http]:
            listener.sock.close()
        self.dns = []
        self.tcp_control = []
        self.http = []


def _same_address(bound: Any, spec: SocketSpec) -> bool:
    try:
        return ipaddress.ip_address(bound[0]) == ipaddress.ip_address(spec.host) and bound[1] == spec.port
    except (TypeError, ValueError, IndexError):
        return False


def _check_bound_socket(sock: socket.socket, spec: SocketSpec) -> None:
    kind = socket.SOCK_DGRAM if spec.kind == UDP else socket.SOCK_STREAM
    if sock.family != spec.family or sock.type != kind:
        raise FdPassError(f"descriptor for {spec.kind.upper()} {spec.label} is a {sock.family.name}/{sock.type.name} socket")
    if not _same_address(sock.getsockname(), spec):
        raise FdPassError(f"descriptor for {spec.kind.upper()} {spec.label} is bound to {sock.getsockname()}")
    if spec.kind == TCP and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise FdPassError(f"descriptor for TCP {spec.label} is not listening")


def adopt(descriptions: Sequence[FdDescription], fds: Sequence[int]) -> HandedOver:
    """Wrap received descriptors after checking each is what its description says.

    Every descriptor is owned by the result, or closed if this raises.
    """
    if len(descriptions) != len(fds):
        close_fds(fds)
        raise FdPassError(f"{len(fds)} descriptors arrived for {len(descriptions)} descriptions")
    handed = HandedOver()
    pending = list(fds)
    try:
        for description, fd in zip(descriptions, fds, strict=True):
            if description.role is FdRole.LOCK:
                if handed.lock_fd is not None:
                    raise FdPassError("two lock descriptors were handed over")
                pending.remove(fd)
                handed.lock_fd = fd
                continue
            try:
                sock = socket.socket(fileno=fd)
            except OSError as exc:
                raise FdPassError(
                    f"{description.role.value} descriptor is not a socket: {exc.strerror or exc}"
                ) from exc
            pending.remove(fd)
            if description.role is FdRole.CONTROL:
                if handed.control is not None:
                    sock.close()
                    raise FdPassError("two control listeners were handed over")
                handed.control = sock
                if sock.type != socket.SOCK_STREAM:
                    raise FdPassError("the control descriptor is not a stream socket")
                continue
            assert description.spec is not None
            kept = {FdRole.DNS: handed.dns, FdRole.TCP_CONTROL: handed.tcp_control, FdRole.HTTP: handed.http}[
                description.role
            ]
            kept.append(ListenSocket(description.spec, sock))
            try:
                _check_bound_socket(sock, description.spec)
            except OSError as exc:
                raise FdPassError(f"descriptor for {description.spec.label}: {exc}") from exc
            sock.setblocking(False)
    except BaseException:
        close_fds(pending)
        handed.close()
        raise
    return handed
