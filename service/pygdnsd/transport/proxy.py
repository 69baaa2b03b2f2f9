"""The PROXY protocol header starting every connection of a ``tcp_proxy`` listener.

A proxy in front of us (dnsdist, HAProxy, a TLS terminator) opens each TCP
connection with a header naming the client it relays (HAProxy's
proxy-protocol.txt, version 1 text or version 2 binary); that client's
address is then the connection's for every purpose: plugins (geoip),
cookies, the ``v6`` counter. Accepted as gdnsd 3.8.1 accepts them:

* v1: ``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n``; SRC and SPORT read as
  the C library reads numeric ones (``10.1`` and ``+5`` pass, ``0x10`` and
  a name do not), DST and DPORT unchecked, ``UNKNOWN`` refused;
* v2: the PROXY command over TCP/IPv4 (family 0x11) or TCP/IPv6 (0x21),
  TLVs skipped; the LOCAL command (a proxy's own health check), whatever
  its family, keeps the connection's own address; anything else refused.

One difference: gdnsd fails a header that its first read does not hold
whole; we wait for the rest of it (TCP is a stream), up to
``MAX_HEADER`` bytes, gdnsd's read size.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
MAX_HEADER = 4096

_V2_FIXED = 16  # signature, version and command, family, length
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21
_V2_PROXY = 1
_V2_LOCAL = 0
_V1_MIN_LINE = 16  # "PROXY TCP4 a b c" is as short as a line gets
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class ProxyHeaderError(ValueError):
    """Not a PROXY header gdnsd accepts: the connection is dropped (``tcp.proxy_fail``)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    length: int  # bytes the header took; the DNS stream starts after them
    client_ip: bytes | None  # the relayed client, packed; None for LOCAL: the connection's own


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``, or None while it may still be arriving.

    Raises ``ProxyHeaderError`` for anything else.
    """
    if (len(data) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(data)) or (
        len(data) < len(V1_PREFIX) and V1_PREFIX.startswith(data)
    ):
        return None
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    raise ProxyHeaderError("neither a PROXY v1 nor a v2 header")


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < _V2_FIXED:
        return None
    version_command, family = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2 signature with version {version_command >> 4}")
    body = int.from_bytes(data[14:16], "big")
    length = _V2_FIXED + body
    if length > MAX_HEADER:
        raise ProxyHeaderError(f"PROXY v2 header of {length} bytes, more than {MAX_HEADER}")
    if len(data) < length:
        return None
    command = version_command & 0x0F
    if command == _V2_LOCAL:
        return ProxyHeader(length, None)
    if command != _V2_PROXY:
        raise ProxyHeaderError(f"PROXY v2 command {command} unknown")
    if family == _V2_TCP4 and body >= 12:
        return ProxyHeader(length, data[16:20])
    if family == _V2_TCP6 and body >= 36:
        return ProxyHeader(length, data[16:32])
    raise ProxyHeaderError(f"PROXY v2 family 0x{family:02x} with {body} address bytes: not TCP over IPv4/IPv6")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r", 0, MAX_HEADER)
    if b"\n" in data[: MAX_HEADER if end < 0 else end]:
        raise ProxyHeaderError("PROXY v1 line ended by LF alone")
    if end < 0 or end + 1 == len(data):
        if len(data) >= MAX_HEADER:
            raise ProxyHeaderError(f"PROXY v1 line without CRLF in {MAX_HEADER} bytes")
        return None
    if data[end + 1] != 0x0A or end < _V1_MIN_LINE:
        raise ProxyHeaderError("PROXY v1 line not ended by CRLF, or too short")
    line = data[:end]
    if line[6:11] not in (b"TCP4 ", b"TCP6 "):
        raise ProxyHeaderError("PROXY v1 protocol is not TCP4 or TCP6")
    fields = line[11:].split(b" ", 3)
    # gdnsd splits the line as C strings: a NUL ends the search for the next field.
    if len(fields) < 4 or b"\x00" in b"".join(fields[:3]):
        raise ProxyHeaderError("PROXY v1 line lacks an address or port")
    source, _destination, source_port, _destination_port = fields
    return ProxyHeader(end + 2, _numeric_address(source, source_port))


def _numeric_address(host: bytes, port: bytes) -> bytes:
    """The packed address of a numeric host and port, read by the C library as gdnsd reads them."""
    try:
        found = socket.getaddrinfo(host.decode("ascii"), port.decode("ascii"), 0, socket.SOCK_STREAM, 0, _NUMERIC)
    except (UnicodeError, ValueError, OSError) as exc:
        raise ProxyHeaderError(f"PROXY v1 source {host!r} port {port!r}: {exc}") from None
    family, _, _, _, address = found[0]
    return socket.inet_pton(family, str(address[0]))
