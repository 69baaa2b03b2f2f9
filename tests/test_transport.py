"""Listening sockets and the UDP/TCP serving loops, with a fake responder."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port
from daemon_support import wait_for
from pygdnsd.config.options import ListenAddress
from pygdnsd.engine.stats import Stats
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.transport.listeners import (
    DEFAULT_UDP_RCVBUF,
    IP_PKTINFO,
    TCP,
    UDP,
    BindError,
    ListenSocket,
    SocketSpec,
    open_listeners,
    specs_for,
)
from pygdnsd.transport.tcp import TcpLimits, TcpServer
from pygdnsd.transport.udp import UdpServer, reply_pktinfo

WAIT = 5.0


class FakeResponder:
    """Answers ``b"ans:" + query``; ``b"DROP..."`` gets no answer; ``b"HOLD..."`` waits for ``release``."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, bool, bool]] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    def respond(
        self, query: bytes, client_ip: bytes, tcp: bool, shape: TcpShape | None = None
    ) -> bytes | None:
        # Recorded: whether the answer asks a TCP client to close (keepalive 0).
        self.calls.append((query, client_ip, tcp, shape is not None and shape.keepalive == 0))
        if query.startswith(b"HOLD"):
            self.holding.set()
            assert self.release.wait(WAIT)
        if query.startswith(b"DROP"):
            return None
        return b"ans:" + query


def endpoint(host: str, port: int, udp: int = 1, tcp: int = 1) -> ListenAddress:
    return ListenAddress(host=host, port=port, udp_threads=udp, tcp_threads=tcp)


@pytest.fixture
def listeners_v4() -> Iterator[list[ListenSocket]]:
    opened = open_listeners([endpoint("127.0.0.1", free_port())])
    yield opened
    for listener in opened:
        listener.sock.close()


def of_kind(listeners: list[ListenSocket], kind: str) -> list[ListenSocket]:
    return [listener for listener in listeners if listener.spec.kind == kind]


# --- listeners ---------------------------------------------------------------


def test_specs_one_socket_per_thread() -> None:
    specs = specs_for(endpoint("::1", 5300, udp=3, tcp=2))
    assert [(s.kind, s.index) for s in specs] == [
        (UDP, 0), (UDP, 1), (UDP, 2), (TCP, 0), (TCP, 1),
    ]
    assert all(s.family == socket.AF_INET6 and s.label == "[::1]:5300" for s in specs)
    assert not specs[0].wildcard
    assert SocketSpec("0.0.0.0", 53, socket.AF_INET, UDP, 0).wildcard
    assert SocketSpec("::", 53, socket.AF_INET6, UDP, 0).wildcard


def test_sockets_have_gdnsd_options() -> None:
    port = free_port("::1")
    opened = open_listeners([endpoint("::1", port, udp=2, tcp=2)])
    try:
        assert len(opened) == 4
        for listener in opened:
            sock = listener.sock
            assert sock.getsockname()[:2] == ("::1", port)
            assert not sock.get_inheritable()
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        udp = of_kind(opened, UDP)[0].sock
        assert udp.type == socket.SOCK_DGRAM
        tcp = of_kind(opened, TCP)[0].sock
        assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        for listener in opened:
            listener.sock.close()


def test_udp_buffer_sizes_applied() -> None:
    ep = ListenAddress("127.0.0.1", free_port(), udp_threads=1, tcp_threads=0, udp_rcvbuf=65536, udp_sndbuf=32768)
    opened = open_listeners([ep])
    try:
        sock = opened[0].sock
        # Linux doubles the requested size for bookkeeping overhead.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 65536
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 32768
    finally:
        opened[0].sock.close()


def test_udp_receive_queue_defaults_deeper_than_the_os() -> None:
    ep = ListenAddress("127.0.0.1", free_port(), udp_threads=1, tcp_threads=0)
    opened = open_listeners([ep])
    try:
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        expected = 2 * min(DEFAULT_UDP_RCVBUF, rmem_max)
        assert opened[0].sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == expected
    finally:
        opened[0].sock.close()


def test_bind_error_names_the_socket() -> None:
    port = free_port()
    # A socket without SO_REUSEPORT makes the port unusable for ours.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(BindError, match=rf"UDP DNS socket 127\.0\.0\.1:{port}: Address already in use"):
            open_listeners([endpoint("127.0.0.1", port)])


# --- UDP ---------------------------------------------------------------------


def udp_exchange(host: str, port: int, payload: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.settimeout(WAIT)
        client.sendto(payload, (host, port))
        return client.recv(4096)


# Every UDP test runs on the batched paths (recvmmsg/sendmmsg: compiled, ctypes) and the portable one.
PATHS: dict[str, dict[str, bool]] = {
    "compiled": {"compiled": True},
    "mmsg": {"compiled": False},
    "socket": {"batched": False},
}
ON_EVERY_PATH = pytest.mark.parametrize("path", list(PATHS))


@ON_EVERY_PATH
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_answers(host: str, path: str) -> None:
    port = free_port(host)
    opened = open_listeners([endpoint(host, port, udp=2, tcp=0)])
    responder, stats = FakeResponder(), Stats()
    server = UdpServer(opened, responder, stats, **PATHS[path])
    server.start()
    try:
        assert udp_exchange(host, port, b"q1") == b"ans:q1"
        assert udp_exchange(host, port, b"q2") == b"ans:q2"
        assert udp_exchange(host, port, b"q3") == b"ans:q3"
    finally:
        server.stop()
        for listener in opened:
            listener.sock.close()
    assert stats.udp["reqs"] == 3
    packed = socket.inet_pton(opened[0].sock.family, host)
    assert {(call[1], call[2]) for call in responder.calls} == {(packed, False)}


@ON_EVERY_PATH
def test_udp_no_answer_when_responder_drops(listeners_v4: list[ListenSocket], path: str) -> None:
    udp = of_kind(listeners_v4, UDP)
    server = UdpServer(udp, FakeResponder(), Stats(), **PATHS[path])
    server.start()
    port = udp[0].spec.port
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(WAIT)
            client.sendto(b"DROP", ("127.0.0.1", port))
            client.sendto(b"after", ("127.0.0.1", port))
            assert client.recv(4096) == b"ans:after"
    finally:
        server.stop()
    server.stop()  # a second stop is harmless


@ON_EVERY_PATH
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_pktinfo_path_answers_from_query_destination(host: str, path: str) -> None:
    # Binding a wildcard address is off limits in tests: the pktinfo path is
    # exercised on a loopback socket that the spec claims is 0.0.0.0 or ::.
    port = free_port(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, port))
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    listener = ListenSocket(SocketSpec(wildcard, port, family, UDP, 0), sock)
    responder = FakeResponder()
    server = UdpServer([listener], responder, Stats(), **PATHS[path])
    server.start()
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as client:
            client.settimeout(WAIT)
            for n in range(3):
                client.sendto(b"q%d" % n, (host, port))
            replies = [client.recvfrom(4096) for _ in range(3)]
        assert sorted(data for data, _ in replies) == [b"ans:q0", b"ans:q1", b"ans:q2"]
        assert {source[:2] for _, source in replies} == {(host, port)}
        assert {call[1] for call in responder.calls} == {socket.inet_pton(family, host)}
    finally:
        server.stop()
        sock.close()


def test_reply_pktinfo_uses_destination_as_source() -> None:
    ifindex, dest = struct.pack("=I", 7), socket.inet_aton("192.0.2.1")
    received = ifindex + socket.inet_aton("192.0.2.99") + dest
    assert reply_pktinfo(socket.IPPROTO_IP, IP_PKTINFO, received) == (
        socket.IPPROTO_IP, IP_PKTINFO, b"\0\0\0\0" + dest + b"\0\0\0\0",
    )
    v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("=I", 3)
    assert reply_pktinfo(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6) == (
        socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6,
    )
    assert reply_pktinfo(socket.SOL_SOCKET, 1, b"x") is None


@ON_EVERY_PATH
def test_udp_stop_leaves_queued_datagrams_in_socket(listeners_v4: list[ListenSocket], path: str) -> None:
    udp = of_kind(listeners_v4, UDP)
    responder = FakeResponder()
    server = UdpServer(udp, responder, Stats(), **PATHS[path])
    server.start()
    port = udp[0].spec.port
    stopper = threading.Thread(target=server.stop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"HOLD", ("127.0.0.1", port))
        assert responder.holding.wait(WAIT)
        queued = [f"q{i}".encode() for i in range(20)]
        for payload in queued:
            client.sendto(payload, ("127.0.0.1", port))
        stopper.start()
        assert wait_for(lambda: server.threads.stopping, WAIT)
        responder.release.set()
        stopper.join(WAIT)
        assert not stopper.is_alive()
    assert [call[0] for call in responder.calls] == [b"HOLD"]
    sock = udp[0].sock
    sock.settimeout(WAIT)
    assert [sock.recv(4096) for _ in queued] == queued


# --- TCP ---------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def read_frame(sock: socket.socket) -> bytes:
    header = read_exact(sock, 2)
    return read_exact(sock, int.from_bytes(header, "big"))


def read_exact(sock: socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError("closed by server")
        out += chunk
    return out


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class TcpFixture:
    def __init__(self, host: str = "127.0.0.1", idle: float = WAIT * 2, max_clients: int = 16) -> None:
        self.host = host
        self.port = free_port(host)
        self.listeners = open_listeners([endpoint(host, self.port, udp=0, tcp=1)])
        self.responder = FakeResponder()
        self.stats = Stats()
        limits = TcpLimits(idle_timeout=idle, max_clients=max_clients)
        self.server = TcpServer([(lst, limits) for lst in self.listeners], self.responder, self.stats)
        self.server.start()
        self.clients: list[socket.socket] = []

    def connect(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(WAIT)
        client.connect((self.host, self.port))
        self.clients.append(client)
        return client

    def close(self) -> None:
        self.server.stop()  # a no-op when stopped already
        for client in self.clients:
            client.close()
        for listener in self.listeners:
            listener.sock.close()


@pytest.fixture
def tcp() -> Iterator[TcpFixture]:
    fixture = TcpFixture()
    yield fixture
    fixture.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_framing(host: str) -> None:
    fixture = TcpFixture(host)
    try:
        client = fixture.connect()
        client.sendall(frame(b"hello, world"))
        assert read_frame(client) == b"ans:hello, world"
        # A query split across writes is reassembled.
        client.sendall(frame(b"split in two")[:3])
        time.sleep(0.05)  # the two writes arrive apart: the pause is what is tested
        client.sendall(frame(b"split in two")[3:])
        assert read_frame(client) == b"ans:split in two"
    finally:
        fixture.close()
    assert fixture.stats.tcp["reqs"] == 2
    assert fixture.stats.tcp["conns"] == 1
    assert fixture.responder.calls[0][1:] == (socket.inet_pton(client.family, host), True, False)


def test_tcp_pipelined_queries_answered_in_order(tcp: TcpFixture) -> None:
    client = tcp.connect()
    queries = [f"query-number-{i}".encode() for i in range(10)]
    client.sendall(b"".join(frame(q) for q in queries))
    assert [read_frame(client) for _ in queries] == [b"ans:" + q for q in queries]


def test_tcp_client_close_counted(tcp: TcpFixture) -> None:
    client = tcp.connect()
    client.sendall(frame(b"close counted"))
    read_frame(client)
    client.close()
    wait_for(lambda: tcp.stats.tcp["close_c"] != 0, WAIT)
    assert tcp.stats.tcp["close_c"] == 1


def test_tcp_zero_length_closes_connection(tcp: TcpFixture) -> None:
    client = tcp.connect()
    client.sendall(b"\x00\x00garbage")
    assert closed_by_server(client)
    assert tcp.stats.tcp["recvfail"] == 1
    assert tcp.stats.tcp["close_s_err"] == 1
    # The server is still serving.
    other = tcp.connect()
    other.sendall(frame(b"still serving"))
    assert read_frame(other) == b"ans:still serving"


@pytest.mark.parametrize("length", [1, 11, 1025, 0xFFFF])
def test_tcp_request_length_outside_gdnsds_bounds_closes_connection(tcp: TcpFixture, length: int) -> None:
    # gdnsd takes 12 (a DNS header) to 1024 bytes per request.
    client = tcp.connect()
    client.sendall(length.to_bytes(2, "big") + bytes(min(length, 100)))
    assert closed_by_server(client)
    assert (tcp.stats.tcp["recvfail"], tcp.stats.tcp["close_s_err"], tcp.stats.tcp["reqs"]) == (1, 1, 0)


def test_tcp_end_of_stream_inside_a_message_is_a_receive_failure(tcp: TcpFixture) -> None:
    client = tcp.connect()
    client.sendall(frame(b"whole message") + frame(b"half a message")[:7])
    assert read_frame(client) == b"ans:whole message"
    client.shutdown(socket.SHUT_WR)
    assert closed_by_server(client)
    assert wait_for(lambda: tcp.stats.tcp["close_s_err"] == 1, WAIT)
    assert (tcp.stats.tcp["recvfail"], tcp.stats.tcp["close_c"]) == (1, 0)


def test_tcp_dropped_query_closes_connection(tcp: TcpFixture) -> None:
    client = tcp.connect()
    client.sendall(frame(b"DROP this one"))
    assert closed_by_server(client)
    assert tcp.stats.tcp["close_s_err"] == 1


def test_tcp_idle_timeout() -> None:
    fixture = TcpFixture(idle=0.3)
    try:
        idle = fixture.connect()
        idle.sendall(frame(b"once and idle"))
        assert read_frame(idle) == b"ans:once and idle"
        assert closed_by_server(idle)
    finally:
        fixture.close()
    assert fixture.stats.tcp["close_s_ok"] == 1


def test_tcp_client_limit_closes_most_idle() -> None:
    fixture = TcpFixture(max_clients=2)
    try:
        first, second = fixture.connect(), fixture.connect()
        for client in (first, second):
            client.sendall(frame(b"a" * 12))
            assert read_frame(client) == b"ans:" + b"a" * 12
        # ``first`` is now more recently active than ``second``.
        first.sendall(frame(b"b" * 12))
        assert read_frame(first) == b"ans:" + b"b" * 12
        third = fixture.connect()
        third.sendall(frame(b"c" * 12))
        assert read_frame(third) == b"ans:" + b"c" * 12
        assert closed_by_server(second)
        first.sendall(frame(b"d" * 12))
        assert read_frame(first) == b"ans:" + b"d" * 12
    finally:
        fixture.close()
    assert fixture.stats.tcp["close_s_kill"] == 1


def test_tcp_stop_answers_what_was_sent_then_closes(tcp: TcpFixture) -> None:
    client = tcp.connect()
    client.sendall(frame(b"HOLD then go"))
    assert tcp.responder.holding.wait(WAIT)
    client.sendall(frame(b"late arrival"))
    stopper = threading.Thread(target=tcp.server.stop)
    stopper.start()
    assert wait_for(lambda: tcp.server.threads.stopping, WAIT)
    tcp.responder.release.set()
    assert read_frame(client) == b"ans:HOLD then go"
    assert read_frame(client) == b"ans:late arrival"
    assert closed_by_server(client)
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert tcp.responder.calls[-1] == (b"late arrival", socket.inet_aton("127.0.0.1"), True, True)
    assert tcp.stats.tcp["close_s_ok"] == 1
    # The listening socket stays open (for a replace) but is no longer served.
    assert tcp.listeners[0].sock.fileno() >= 0
