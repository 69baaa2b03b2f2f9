"""transport.proxy: PROXY v1/v2 headers accepted and refused as Debian's gdnsd 3.8.1 does.

Each accepted/refused case below was sent to gdnsd 3.8.1 on a ``tcp_proxy``
listener (answered vs reset with ``tcp.proxy_fail``); the differential test
(tests/differential/test_dso_proxy_differential.py) keeps comparing a set
of them with the real daemon.
"""

from __future__ import annotations

import socket
import struct

import pytest

from pygdnsd.transport import proxy

SIG = proxy.V2_SIGNATURE
V4_BODY = bytes([10, 1, 2, 3, 127, 0, 0, 1]) + struct.pack("!HH", 1234, 53)
V6_BODY = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + bytes(15) + b"\x01" + struct.pack("!HH", 1234, 53)
QUERY = b"\x00\x1d" + bytes(29)  # what follows the header: left alone


def v2(command: int, family: int, body: bytes, version: int = 2) -> bytes:
    return SIG + bytes([version << 4 | command, family]) + struct.pack("!H", len(body)) + body


def ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text.partition("%")[0])


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 53\r\n", "10.1.2.3"),
        (b"PROXY TCP6 2001:db8::1 ::1 1234 53\r\n", "2001:db8::1"),
        # gdnsd reads the source with getaddrinfo(AI_NUMERICHOST|AI_NUMERICSERV), the
        # family not checked against TCP4/TCP6, the destination not at all:
        (b"PROXY TCP4 2001:db8::1 ::1 1234 53\r\n", "2001:db8::1"),
        (b"PROXY TCP4 10.1 127.0.0.1 1234 53\r\n", "10.0.0.1"),
        (b"PROXY TCP4 1 2 3 4\r\n", "0.0.0.1"),
        (b"PROXY TCP6 fe80::1%lo ::1 5 53\r\n", "fe80::1"),
        (b"PROXY TCP6 ::ffff:10.1.2.3 ::1 5 53\r\n", "::ffff:10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 70000 53\r\n", "10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 +5 53\r\n", "10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1  53\r\n", "10.1.2.3"),  # empty source port
        (b"PROXY TCP4 10.1.2.3 x 5 53\r\n", "10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 xx\r\n", "10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 53 77\r\n", "10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 5 \r\n", "10.1.2.3"),
        (b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 53" + b" " * 100 + b"\r\n", "10.1.2.3"),  # past v1's 107
        (v2(1, 0x11, V4_BODY), "10.1.2.3"),
        (v2(1, 0x21, V6_BODY), "2001:db8::7"),
        (v2(1, 0x11, V4_BODY + b"\x04\x00\x02ab"), "10.1.2.3"),  # a TLV
        (v2(1, 0x11, V4_BODY + bytes(2003)), "10.1.2.3"),
        (v2(1, 0x11, V4_BODY + bytes(3)), "10.1.2.3"),
    ],
)
def test_accepted_headers_give_the_relayed_client(header: bytes, client: str) -> None:
    found = proxy.parse(header + QUERY)
    assert found == proxy.ProxyHeader(len(header), ip(client))


@pytest.mark.parametrize(
    "header",
    [v2(0, 0x00, b""), v2(0, 0x11, V4_BODY), v2(0, 0x21, b""), v2(0, 0x00, b"abc")],
    ids=["unspec", "v4", "v6-empty", "junk"],
)
def test_local_keeps_the_connections_own_address(header: bytes) -> None:
    assert proxy.parse(header + QUERY) == proxy.ProxyHeader(len(header), None)


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN 10.1.2.3 127.0.0.1 1234 53\r\n",
        b"PROXY TCP4 10.1.2.3 127.0.0.1 domain 53\r\n",  # a service name
        b"PROXY TCP4 10.1.2.3 127.0.0.1 -1 53\r\n",
        b"PROXY TCP4 10.1.2.3 127.0.0.1 0x10 53\r\n",
        b"PROXY TCP4 localhost 127.0.0.1 1234 53\r\n",  # a host name
        b"PROXY TCP4 10.1.2.3 127.0.0.1 1234\r\n",  # no destination port
        b"PROXY TCP4  10.1.2.3 127.0.0.1 1234 53\r\n",  # empty source
        b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 53\n",  # LF alone
        b"PROXY TCP4 10.1.2.3 1.2.3.4 5 53\rX\r\n",
        b"PROXY TCP4 10.1.2.3\t1.2.3.4 5 53\r\n",
        b"PROXY TCP4 1 2 3\r\n",  # too short a line
        b"proxy TCP4 10.1.2.3 1.2.3.4 5 53\r\n",
        b"PROXY TCP4 \xff.1.2.3 1.2.3.4 5 53\r\n",
        b"PROXY TCP4 10.1.2.3\x00 1.2.3.4 5 53\r\n",
        v2(2, 0x11, V4_BODY),  # command 2
        v2(1, 0x12, V4_BODY),  # UDP over IPv4
        v2(1, 0x31, bytes(216)),  # unix stream
        v2(1, 0x10, V4_BODY),  # unspecified protocol
        v2(1, 0x11, V4_BODY[:8]),  # too few address bytes
        v2(1, 0x21, V4_BODY),
        v2(1, 0x11, V4_BODY, version=1),
        v2(1, 0x11, V4_BODY + bytes(proxy.MAX_HEADER)),  # more than gdnsd reads
        QUERY,  # no header at all
        b"GET / HTTP/1.0\r\n\r\n",
    ],
)
def test_refused_headers(data: bytes) -> None:
    with pytest.raises(proxy.ProxyHeaderError):
        proxy.parse(data + QUERY)


@pytest.mark.parametrize(
    "header",
    [b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 53\r\n", v2(1, 0x11, V4_BODY), v2(1, 0x11, V4_BODY + bytes(100))],
    ids=["v1", "v2", "v2-tlvs"],
)
def test_a_header_still_arriving_is_waited_for(header: bytes) -> None:
    # A deliberate difference: gdnsd refuses a header its first read does not hold whole.
    for cut in range(len(header)):
        assert proxy.parse(header[:cut]) is None, cut
    assert proxy.parse(header) is not None


def test_a_v1_line_without_end_is_refused_at_gdnsds_read_size() -> None:
    line = b"PROXY TCP4 10.1.2.3 127.0.0.1 1234 53" + b" " * proxy.MAX_HEADER
    assert proxy.parse(line[: proxy.MAX_HEADER - 1]) is None
    with pytest.raises(proxy.ProxyHeaderError):
        proxy.parse(line[: proxy.MAX_HEADER])
