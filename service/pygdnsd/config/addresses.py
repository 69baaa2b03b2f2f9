"""Listen-address specs: ``IP``, ``IP:port``, ``[IPv6]:port`` (man gdnsd.config, listen).

Resolution goes through the C library's ``getaddrinfo`` with numeric hosts,
as gdnsd does, so the same odd forms are accepted (``127.1``, ``0177.0.0.1``,
scoped ``fe80::1%lo``, and ports read by the C library: ``99999`` wraps to
a 16-bit value, ``+53`` works, service names do not).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pygdnsd.config.scalars import c_bytes


@dataclass(frozen=True)
class SocketAddress:
    """A resolved numeric address."""

    host: str
    port: int
    family: int


def format_address(host: str, port: int) -> str:
    """``192.0.2.1:53`` or ``[2001:db8::1]:53``, as gdnsd logs addresses."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AddressSpecError(ValueError):
    """The spec is not a numeric address (the message says why)."""


def split_spec(spec: str) -> tuple[str, str | None]:
    """(host, port or None) from a spec.

    Only a bracketed host, or one with a single colon, carries a port: any
    other colon-rich string is a bare IPv6 address.
    """
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise AddressSpecError("unbalanced '['")
        host, rest = spec[1:close], spec[close + 1 :]
        if rest == "":
            return host, None
        if not rest.startswith(":"):
            raise AddressSpecError("only ':port' may follow ']'")
        return host, rest[1:] or None
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, port or None
    return spec, None


def resolve_spec(spec: str, default_port: int) -> SocketAddress:
    """The socket address ``spec`` names; ``default_port`` when it has none."""
    host, port = split_spec(spec)
    service = c_bytes(port) if port is not None else str(default_port).encode()
    try:
        infos = socket.getaddrinfo(
            c_bytes(host),
            service,
            socket.AF_UNSPEC,
            socket.SOCK_STREAM,
            0,
            socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except socket.gaierror as exc:
        raise AddressSpecError(exc.strerror or str(exc)) from exc
    except (UnicodeError, ValueError, OSError) as exc:
        raise AddressSpecError(str(exc)) from exc
    if not infos:
        raise AddressSpecError("no address")
    family, _type, _proto, _name, sockaddr = infos[0]
    return SocketAddress(host=str(sockaddr[0]), port=int(sockaddr[1]), family=int(family))
