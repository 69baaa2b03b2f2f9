"""Opening the DNS listening sockets, with the options gdnsd 3.8.1 sets.

Like gdnsd, each listen address gets ``udp_threads`` UDP sockets and
``tcp_threads`` TCP sockets, all bound to the same address with SO_REUSEPORT,
one serving thread per socket: the kernel spreads traffic across them. Each
socket is described by a ``SocketSpec`` so a replace can match sockets handed
over by a previous daemon to the addresses of its own config.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from pygdnsd.config.addresses import format_address
from pygdnsd.config.options import ListenAddress
from pygdnsd.errors import GdnsdError

log = logging.getLogger(__name__)

# Linux constants the socket module of python 3.11 does not export.
IP_MTU_DISCOVER = 10
IP_PKTINFO = 8
IP_FREEBIND = 15
IPV6_MTU = 24
IPV6_MTU_DISCOVER = 23
# PMTUDISC_OMIT: never set DF and ignore path-MTU updates, so a forged ICMP
# "fragmentation needed" cannot shrink our UDP responses.
PMTUDISC_OMIT = 5
IPTOS_LOWDELAY = 0x10
IPV6_MIN_MTU = 1280
TCP_DEFER_SECONDS = 30

UDP = "udp"
TCP = "tcp"


class BindError(GdnsdError):
    """A listening socket could not be set up; the message names the socket."""


DEFAULT_UDP_RCVBUF = 1 << 20


@dataclass(frozen=True, slots=True)
class SocketSpec:
    """What one listening socket is: enough to match it against a config."""

    host: str
    port: int
    family: int
    kind: str  # UDP or TCP
    index: int  # which of the address's SO_REUSEPORT instances

    @property
    def label(self) -> str:
        return format_address(self.host, self.port)

    @property
    def wildcard(self) -> bool:
        """True for 0.0.0.0 and ::, where answers need an explicit source address."""
        return ipaddress.ip_address(self.host).is_unspecified


@dataclass(frozen=True, slots=True)
class ListenSocket:
    spec: SocketSpec
    sock: socket.socket


def specs_for(address: ListenAddress) -> list[SocketSpec]:
    """Every socket one listen address needs: its UDP ones, then its TCP ones."""
    family = address.family
    udp = [SocketSpec(address.host, address.port, family, UDP, i) for i in range(address.udp_threads)]
    tcp = [SocketSpec(address.host, address.port, family, TCP, i) for i in range(address.tcp_threads)]
    return udp + tcp


def _bind(sock: socket.socket, spec: SocketSpec) -> None:
    """Bind, retrying with IP_FREEBIND for an address not (yet) on the host, like gdnsd."""
    address = (spec.host, spec.port)
    try:
        sock.bind(address)
        return
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
    # IP_FREEBIND at the IP level applies to IPv6 sockets too on Linux.
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind(address)
    log.warning(
        "%s DNS socket %s bound via IP_FREEBIND, address may not (yet!) exist on the host",
        spec.kind.upper(),
        spec.label,
    )


def _new_socket(spec: SocketSpec) -> socket.socket:
    kind = socket.SOCK_DGRAM if spec.kind == UDP else socket.SOCK_STREAM
    # Python sockets are created close-on-exec (non-inheritable) already.
    sock = socket.socket(spec.family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if spec.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def size_udp_buffers(sock: socket.socket, address: ListenAddress) -> None:
    """The receive (and send) buffer sizes a UDP socket of ``address`` gets: bound
    here, or handed over by an old daemon that may have sized it otherwise (gdnsd does)."""
    # Unset (0), gdnsd keeps the OS default (~208 KiB, 40-60 ms of a busy
    # server's queries). A Python server answers slower and stalls when
    # the CPU is shared (zone loading in a replacement instance, say), so
    # we default to a deeper queue: measured, the default queue lost
    # hundreds of queries per minute at 5k qps on a loaded 2-core host,
    # 1 MiB lost none. The kernel caps it at net.core.rmem_max.
    rcvbuf = address.udp_rcvbuf or DEFAULT_UDP_RCVBUF
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if address.udp_sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, address.udp_sndbuf)


def open_udp(spec: SocketSpec, address: ListenAddress) -> socket.socket:
    sock = _new_socket(spec)
    try:
        if spec.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU, IPV6_MIN_MTU)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_OMIT)
            # gdnsd asks for packet info on every v6 socket; we only read it
            # on wildcard ones, but setting it everywhere costs nothing.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, IPTOS_LOWDELAY)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_OMIT)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IPTOS_LOWDELAY)
            if spec.wildcard:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        size_udp_buffers(sock, address)
        _bind(sock, spec)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(f"bind() failed for UDP DNS socket {spec.label}: {exc.strerror or exc}") from exc
    return sock


def open_tcp(spec: SocketSpec, address: ListenAddress) -> socket.socket:
    sock = _new_socket(spec)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The kernel holds a connection back until its first request arrives,
        # so accept() is followed by an immediate answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, TCP_DEFER_SECONDS)
        if address.tcp_fastopen:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, address.tcp_fastopen)
            except OSError as exc:
                log.warning("Failed to enable TCP Fastopen on %s: %s", spec.label, exc.strerror)
        if spec.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU, IPV6_MIN_MTU)
        _bind(sock, spec)
        sock.listen(address.tcp_backlog or socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(f"bind() failed for TCP DNS socket {spec.label}: {exc.strerror or exc}") from exc
    return sock


def open_listeners(addresses: Iterable[ListenAddress]) -> list[ListenSocket]:
    """Open every socket of every listen address; on any failure close the ones opened and raise."""
    opened: list[ListenSocket] = []
    try:
        for address in addresses:
            for spec in specs_for(address):
                opener = open_udp if spec.kind == UDP else open_tcp
                opened.append(ListenSocket(spec, opener(spec, address)))
    except BindError:
        for listener in opened:
            listener.sock.close()
        raise
    return opened
