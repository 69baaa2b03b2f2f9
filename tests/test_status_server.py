"""status.server in-process: access, bounds on bad, slow and many clients, and the hand-over between two servers."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence

import pytest

from conftest import free_port
from daemon_support import wait_for
from pygdnsd.config.options import LOOPBACK_NETWORKS, HttpAddress, Network
from pygdnsd.control import tcp_listeners
from pygdnsd.status import http
from pygdnsd.status.server import HTTP_LISTEN, StatusServer, allowed
from pygdnsd.transport.listeners import ListenSocket


class Counter:
    """Answers every path with how many requests it answered so far."""

    def __init__(self) -> None:
        self.answered = 0
        self.ticks = 0

    def answer(self, request: http.Request) -> http.Response:
        if request.path == "/boom":
            raise RuntimeError("a bug")
        self.answered += 1
        return http.Response(200, "text/plain", f"{self.answered}\n".encode())

    def tick(self) -> None:
        self.ticks += 1


def listen() -> list[ListenSocket]:
    return tcp_listeners.open_all([HttpAddress("127.0.0.1", free_port(), socket.AF_INET)], HTTP_LISTEN)


def serve(
    listeners: Sequence[ListenSocket], allow: Sequence[Network] = LOOPBACK_NETWORKS, max_clients: int = 16, timeout: float = 5.0
) -> tuple[StatusServer, Counter]:
    answerer = Counter()
    server = StatusServer(listeners, answerer, allow=allow, max_clients=max_clients, timeout=timeout)
    server.start()
    return server, answerer


@pytest.fixture
def running() -> Iterator[tuple[StatusServer, Counter, int]]:
    listeners = listen()
    server, answerer = serve(listeners)
    yield server, answerer, listeners[0].spec.port
    server.close()


def exchange(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_one_request_per_connection_then_close(running: tuple[StatusServer, Counter, int]) -> None:
    _, answerer, port = running
    first = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(first) == 200 and first.endswith(b"\r\n\r\n1\n") and b"Connection: close" in first
    # A pipelined second request is not answered: the connection closes after the first, without a reset.
    two = exchange(port, b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert two.count(b"HTTP/1.1 200") == 1 and answerer.answered == 2
    head = exchange(port, b"HEAD / HTTP/1.1\r\n\r\n")
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 2" in head
    assert status_of(exchange(port, b"GET /boom HTTP/1.1\r\n\r\n")) == 500
    assert wait_for(lambda: answerer.ticks > 0, 2.0)


def test_malformed_and_huge_requests_are_refused_and_closed(running: tuple[StatusServer, Counter, int]) -> None:
    server, answerer, port = running
    assert status_of(exchange(port, b"\x16\x03\x01\x02\x00junk\r\n\r\n")) == 400  # a TLS hello
    assert status_of(exchange(port, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")) == 413
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # The head never ends: refused once it passes the limit, and cut off if the client sends on.
        sock.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * (2 * http.MAX_HEAD))
        assert status_of(sock.recv(65536)) == 431
        sent = 0
        with pytest.raises(OSError):
            for _ in range(1024):
                sock.sendall(b"a" * 16384)
                sent += 16384
            raise AssertionError(f"the server read {sent} more bytes")
    assert answerer.answered == 0
    assert wait_for(lambda: server.client_count == 0, 5.0)


def test_clients_outside_http_allow_are_refused_at_accept() -> None:
    listeners = listen()
    server, answerer = serve(listeners, allow=[ipaddress.ip_network("127.0.0.2/32")])
    port = listeners[0].spec.port
    try:
        refused = exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n", source="127.0.0.1")
        assert status_of(refused) == 403 and answerer.answered == 0
        assert status_of(exchange(port, b"GET / HTTP/1.1\r\n\r\n", source="127.0.0.2")) == 200
    finally:
        server.close()
    assert allowed("::ffff:127.0.0.1", LOOPBACK_NETWORKS) and allowed("::1", LOOPBACK_NETWORKS)
    assert not allowed("192.0.2.1", LOOPBACK_NETWORKS) and not allowed("garbage", LOOPBACK_NETWORKS)


def test_slow_clients_are_dropped_at_the_timeout() -> None:
    listeners = listen()
    server, _ = serve(listeners, timeout=1.0)
    port = listeners[0].spec.port
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            began = time.monotonic()
            sock.sendall(b"GET / HT")  # and nothing more
            response = sock.recv(4096)
            assert status_of(response) == 408
            assert sock.recv(4096) == b""
            assert 0.9 < time.monotonic() - began < 3.0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            assert idle.recv(4096) == b""  # never said a word: just closed
    finally:
        server.close()


def test_a_crowd_of_idle_connections_cannot_keep_a_request_out() -> None:
    listeners = listen()
    server, answerer = serve(listeners, max_clients=8)
    port = listeners[0].spec.port
    crowd = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\n")  # a head begun, never finished
            crowd.append(sock)
        assert wait_for(lambda: server.client_count == 8, 5.0)
        assert status_of(exchange(port, b"GET / HTTP/1.1\r\n\r\n")) == 200
        assert server.client_count <= 8 and answerer.answered == 1
    finally:
        for sock in crowd:
            sock.close()
        server.close()


def test_a_paused_server_leaves_connections_queued_for_the_next() -> None:
    """A replace: the old server stops accepting, the new one serves what waited in the queue."""
    listeners = listen()
    port = listeners[0].spec.port
    old, old_answers = serve(listeners)
    assert status_of(exchange(port, b"GET / HTTP/1.1\r\n\r\n")) == 200
    old.pause_accepting()
    waiting = socket.create_connection(("127.0.0.1", port), timeout=5)
    waiting.sendall(b"GET / HTTP/1.1\r\n\r\n")
    time.sleep(0.3)
    assert old_answers.answered == 1
    successor = [ListenSocket(s.spec, s.sock.dup()) for s in listeners]  # as a hand-off gives them
    old.close()
    new, new_answers = serve(successor)
    try:
        received = b""
        while chunk := waiting.recv(4096):
            received += chunk
        assert status_of(received) == 200 and new_answers.answered == 1
    finally:
        waiting.close()
        new.close()
