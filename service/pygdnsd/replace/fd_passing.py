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
* ``adopt``: what each received descriptor is, found out from the descriptor
  itself as gdnsd 3.8.1 does (it sends no description): the instance lock,
  the control listener, then DNS sockets, ``tcp_control`` and ``http_listen``
  listeners told apart by their address; anything else refuses the hand-off.
"""

from __future__ import annotations

import array
import contextlib
import ipaddress
import os
import socket
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygdnsd.config.addresses import format_address
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


# --- what each descriptor is --------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What the new daemon takes the handed-over descriptors to be, from its own config.

    gdnsd 3.8.1 describes nothing: its TAKE answer is the lock, the control
    listener, then its DNS sockets (each address's UDP sockets, then its TCP
    ones), and the receiver finds out what each socket is from the socket
    itself. So do we, whichever daemon sent them.
    """

    lock_path: Path
    control_path: Path
    # The tcp_control addresses of our config: a TCP listener bound to one is
    # that listener (only a pygdnsd old daemon hands them over), any other a DNS socket.
    tcp_control: frozenset[tuple[Any, int]] = frozenset()
    # Our http_listen addresses: likewise (the status listener; a gdnsd old daemon has none).
    http: frozenset[tuple[Any, int]] = frozenset()

    @staticmethod
    def address_key(host: str, port: int) -> tuple[Any, int]:
        return (ipaddress.ip_address(host), port)


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


_KINDS = {socket.SOCK_DGRAM: UDP, socket.SOCK_STREAM: TCP}


def _check_lock(fd: int, path: Path) -> None:
    """The first descriptor is our run_dir's lock file: the very file, not a copy or another."""
    try:
        handed, ours = os.fstat(fd), os.stat(path)
    except OSError as exc:
        raise FdPassError(f"the lock descriptor cannot be checked against '{path}': {exc.strerror or exc}") from exc
    if not stat.S_ISREG(handed.st_mode) or (handed.st_dev, handed.st_ino) != (ours.st_dev, ours.st_ino):
        raise FdPassError(f"the first descriptor handed over is not the lock file '{path}'")


def _check_control(sock: socket.socket, path: Path) -> None:
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise FdPassError(f"the second descriptor handed over is an {_kind_name(sock)} socket, not the control listener")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise FdPassError("the control socket handed over is not listening")
    bound = sock.getsockname()
    # A relative or abstract name cannot be compared; the lock already tied us to this run_dir.
    if isinstance(bound, str) and os.path.isabs(bound) and os.path.realpath(bound) != os.path.realpath(path):
        raise FdPassError(f"the control socket handed over is bound to '{bound}', not '{path}'")


def _kind_name(sock: socket.socket) -> str:
    family = getattr(sock.family, "name", str(sock.family))
    kind = getattr(sock.type, "name", str(sock.type))
    return f"{family}/{kind}"


def identify(sock: socket.socket, position: int) -> tuple[str, int, int, str]:
    """(host, port, family, kind) of a handed-over DNS or TCP control socket, from the socket itself.

    Refuses what no gdnsd listens with: another family or type, an unbound
    socket, a TCP socket that does not listen, a UDP socket connected to one peer.
    """
    what = f"descriptor #{position} handed over"
    kind = _KINDS.get(sock.type)
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or kind is None:
        raise FdPassError(f"{what} is an {_kind_name(sock)} socket, not a UDP or TCP listener")
    host, port = sock.getsockname()[:2]
    if port == 0:
        raise FdPassError(f"{what} ({kind.upper()}) is not bound to an address")
    if kind == TCP and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise FdPassError(f"{what} (TCP {format_address(host, port)}) is not listening")
    if kind == UDP:
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None  # ENOTCONN: a listener, as it should be
        if peer is not None:
            raise FdPassError(f"{what} (UDP {format_address(host, port)}) is connected to {peer[0]}")
    return host, port, sock.family, kind


def _wrap(fd: int, position: int) -> socket.socket:
    """A socket object owning ``fd``, if ``fd`` is a socket."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise FdPassError(f"descriptor #{position} handed over is not a socket")
        return socket.socket(fileno=fd)
    except OSError as exc:
        raise FdPassError(f"descriptor #{position} handed over cannot be used: {exc.strerror or exc}") from exc


def adopt(fds: Sequence[int], expected: Expected) -> HandedOver:
    """Wrap received descriptors after finding out what each is (``Expected`` says what may come).

    Every descriptor is owned by the result, or closed if this raises: any
    descriptor that is not what a gdnsd hands over refuses the whole lot,
    before the old daemon is asked to stop.
    """
    handed = HandedOver()
    pending = list(fds)
    counts: dict[tuple[Any, int, int, str], int] = {}
    try:
        if len(fds) < 2:
            raise FdPassError(
                f"{len(fds)} descriptors arrived; a takeover hands over at least the lock and the control socket"
            )
        _check_lock(fds[0], expected.lock_path)
        handed.lock_fd = pending.pop(0)
        handed.control = _wrap(fds[1], 2)
        pending.pop(0)
        _check_control(handed.control, expected.control_path)
        for position, fd in enumerate(fds[2:], start=3):
            sock = _wrap(fd, position)
            pending.pop(0)
            try:
                host, port, family, kind = identify(sock, position)
            except OSError as exc:
                sock.close()
                raise FdPassError(f"descriptor #{position} handed over cannot be checked: {exc.strerror or exc}") from exc
            except BaseException:
                sock.close()
                raise
            address = Expected.address_key(host, port)
            # A TCP listener on one of our tcp_control or http_listen addresses is
            # that listener (config checks keep those apart from DNS addresses).
            is_control = kind == TCP and address in expected.tcp_control
            is_http = kind == TCP and not is_control and address in expected.http
            key = (address[0], port, family, kind)
            index = counts.get(key, 0)
            counts[key] = index + 1
            ours = is_control or is_http
            spec = SocketSpec(host, port, socket.AddressFamily(family), kind, 0 if ours else index)
            (handed.tcp_control if is_control else handed.http if is_http else handed.dns).append(ListenSocket(spec, sock))
            if ours and index > 0:
                option = "tcp_control" if is_control else "http_listen"
                raise FdPassError(f"two listeners for the {option} address {format_address(host, port)} were handed over")
            sock.setblocking(False)
    except OSError as exc:
        close_fds(pending)
        handed.close()
        raise FdPassError(f"the descriptors handed over cannot be checked: {exc.strerror or exc}") from exc
    except BaseException:
        close_fds(pending)
        handed.close()
        raise
    return handed
