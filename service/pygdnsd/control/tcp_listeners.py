"""The ``tcp_control`` listening sockets: bound at start, handed over on a replace.

Each configured address gets one listening socket. Like the DNS sockets they
carry SO_REUSEPORT, so a replacement that cannot reach a hung old daemon can
bind beside it (``replace.new_daemon.Overlap``); Linux lets only the same
user join such a group, so no other local user can bind in and take our
clients. SO_REUSEPORT is also how a takeover with gdnsd 3.8.1 goes, in either
direction: gdnsd hands no tcp_control listener over, and its new daemon
binds its own beside the old one's. Between two pygdnsd daemons the old one
hands its listeners over after the DNS sockets, and the new daemon keeps
those its config still names (connections waiting in their accept queues
are served by it), binds the new ones and closes the rest. Permissions always come from the serving daemon's config,
so a replace can change ``chal_ok`` and ``ctl_ok``.

The same steps serve the ``http_listen`` listeners of the status page
(``status.listeners``): each kind is a ``Role`` naming its option in errors
and its sockets in the log.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pygdnsd.config.addresses import format_address
from pygdnsd.config.options import ControlAddress
from pygdnsd.control.access import Access, ControlListener
from pygdnsd.errors import GdnsdError
from pygdnsd.replace.socket_plan import plan_sockets
from pygdnsd.transport.listeners import TCP, ListenSocket, SocketSpec

log = logging.getLogger(__name__)


class StreamAddress(Protocol):
    """A configured TCP listen address (``ControlAddress``, ``HttpAddress``)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def family(self) -> int: ...


_Address = TypeVar("_Address", bound=StreamAddress)


@dataclass(frozen=True)
class Role:
    """What a kind of listener is for: its option (in errors) and its name (in the log)."""

    option: str
    noun: str
    # Connections that wait while a replace hands the listeners over queue here.
    backlog: int


# A takeover pauses accept() for milliseconds, and legitimate clients are few.
TCP_CONTROL = Role("tcp_control", "TCP control socket", 64)


def label(address: StreamAddress | SocketSpec, role: Role = TCP_CONTROL) -> str:
    return f"{role.noun} {format_address(address.host, address.port)}"


def spec_of(address: StreamAddress) -> SocketSpec:
    """The address as a SocketSpec, the key a replace matches handed-over sockets by."""
    return SocketSpec(address.host, address.port, address.family, TCP, 0)


def access_of(address: ControlAddress) -> Access:
    return Access(challenges=address.chal_ok, daemon_control=address.ctl_ok)


def bind(address: StreamAddress, role: Role = TCP_CONTROL) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(role.backlog)
    except OSError as exc:
        sock.close()
        raise GdnsdError(
            f"option '{role.option}': cannot listen on {label(address, role)}: {exc.strerror or exc}"
        ) from exc
    return sock


def open_all(addresses: Sequence[StreamAddress], role: Role = TCP_CONTROL) -> list[ListenSocket]:
    """A listening socket per address; on any failure the ones opened are closed and it raises."""
    opened: list[ListenSocket] = []
    try:
        for address in addresses:
            opened.append(ListenSocket(spec_of(address), bind(address, role)))
    except GdnsdError:
        for listener in opened:
            listener.sock.close()
        raise
    return opened


def adopt(
    handed: Sequence[ListenSocket], addresses: Sequence[_Address], role: Role = TCP_CONTROL
) -> list[ListenSocket]:
    """The sockets for ``addresses``: handed-over ones where they match, fresh ones for the rest.

    Handed-over sockets no address wants are closed, once the fresh ones are
    bound: if binding fails it raises with ``handed`` untouched.
    """
    plan = plan_sockets(handed, [spec_of(address) for address in addresses])
    wanted = {spec_of(address): address for address in addresses}
    fresh = open_all([wanted[spec] for spec in plan.open], role)
    for listener in plan.close:
        log.info("closing the %s, no longer configured", label(listener.spec, role))
        listener.sock.close()
    return [*plan.reuse, *fresh]


def listeners(sockets: Sequence[ListenSocket], addresses: Sequence[ControlAddress]) -> list[ControlListener]:
    """Each socket with the access its address's config grants."""
    by_spec = {spec_of(address): address for address in addresses}
    return [ControlListener(s.sock, access_of(by_spec[s.spec]), label(s.spec)) for s in sockets]
