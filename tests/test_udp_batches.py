"""UDP serving in batches (recvmmsg/sendmmsg) and its fallback.

Batches are the compiled fast path's (``transport/_fastpath.c``) or ctypes'
(``transport/mmsg.py``). Queries are queued in the listening socket before
the server starts, so the first read takes many of them at once: these
tests exercise whole batches, not one datagram per call. Each runs on every
path where the behaviour must be the same.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conftest import free_port
from daemon_support import wait_for
from pygdnsd.config.options import ListenAddress
from pygdnsd.engine.stats import Stats
from pygdnsd.transport import mmsg, udp
from pygdnsd.transport.listeners import ListenSocket, open_listeners
from pygdnsd.transport.udp import UdpServer

WAIT = 5.0
# UdpServer's arguments for each path: compiled batches, ctypes batches, one datagram per call.
PATHS: dict[str, dict[str, bool]] = {
    "compiled": {"compiled": True},
    "mmsg": {"compiled": False},
    "socket": {"batched": False},
}
ON_EVERY_PATH = pytest.mark.parametrize("path", list(PATHS))
ON_BATCHED_PATHS = pytest.mark.parametrize("path", ["compiled", "mmsg"])
# What the kernel lets a test client queue before it reads (capped by rmem_max).
CLIENT_RCVBUF = 1 << 20


class Responder:
    """``b"ans:" + query``; ``b"BIG:n"`` gets n bytes; ``b"BOOM"`` raises; ``b"HOLD"`` waits."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    def respond(self, query: bytes, client_ip: bytes, tcp: bool, closing: bool = False) -> bytes | None:
        self.calls.append((query, client_ip))
        if query == b"HOLD":
            self.holding.set()
            assert self.release.wait(WAIT)
        if query == b"BOOM":
            raise ValueError("responder failure")
        if query.startswith(b"BIG:"):
            size = int(query[4:])
            return (query + b"-" * size)[:size]
        return b"ans:" + query


def client_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.settimeout(WAIT)
    return sock


@contextmanager
def listening(host: str, threads: int = 1) -> Iterator[list[ListenSocket]]:
    opened = open_listeners([ListenAddress(host, free_port(host), udp_threads=threads, tcp_threads=0)])
    try:
        yield opened
    finally:
        for listener in opened:
            listener.sock.close()


@contextmanager
def serving(server: UdpServer) -> Iterator[UdpServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def address(listeners: list[ListenSocket]) -> tuple[str, int]:
    spec = listeners[0].spec
    return spec.host, spec.port


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many datagrams each batched read of the ctypes path returned."""
    sizes: list[int] = []
    receive = mmsg.DatagramBatch.receive

    def recording(self: mmsg.DatagramBatch) -> int:
        count = receive(self)
        sizes.append(count)
        return count

    monkeypatch.setattr(mmsg.DatagramBatch, "receive", recording)
    return sizes


@ON_EVERY_PATH
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_many_queries_in_flight_each_answered_to_its_sender(
    host: str, path: str, batch_sizes: list[int]
) -> None:
    # IPv4 clients each send from their own loopback address (127.0.0.1-4),
    # so a reply or client address taken from the wrong slot shows.
    sources = [f"127.0.0.{n + 1}" if ":" not in host else host for n in range(4)]
    clients = [client_socket(host) for _ in sources]
    for client, source in zip(clients, sources, strict=True):
        client.bind((source, 0))
    sent = {n: [b"c%d-q%d" % (n, i) for i in range(60)] for n in range(len(clients))}
    with listening(host) as opened:
        for n, client in enumerate(clients):
            for query in sent[n]:
                client.sendto(query, address(opened))
        responder, stats = Responder(), Stats()
        with serving(UdpServer(opened, responder, stats, **PATHS[path])):
            for n, client in enumerate(clients):
                answers = [client.recv(4096) for _ in sent[n]]
                assert sorted(answers) == sorted(b"ans:" + query for query in sent[n])
    for client in clients:
        client.close()
    assert stats.udp["reqs"] == 240
    assert stats.udp["sendfail"] == stats.udp["recvfail"] == 0
    family = clients[0].family
    assert {(query, ip) for query, ip in responder.calls} == {
        (query, socket.inet_pton(family, sources[n])) for n in sent for query in sent[n]
    }
    if path == "mmsg":
        assert max(batch_sizes) == udp.BATCH  # 240 queued: full batches were read
    else:
        # The compiled path's batches are read in C (test_fastpath.py counts them).
        assert batch_sizes == []


@ON_EVERY_PATH
def test_query_longer_than_the_read_size_is_cut(path: str) -> None:
    long_query = bytes(range(256)) * 20  # 5120 bytes
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        client.sendto(long_query, address(opened))
        client.sendto(b"after", address(opened))
        responder = Responder()
        with serving(UdpServer(opened, responder, Stats(), **PATHS[path])):
            assert client.recv(8192) == b"ans:" + long_query[: udp.MAX_QUERY]
            assert client.recv(4096) == b"ans:after"
    assert [query for query, _ in responder.calls] == [long_query[: udp.MAX_QUERY], b"after"]


@ON_EVERY_PATH
def test_answers_larger_than_the_send_area_together_all_leave(path: str) -> None:
    # 12 answers of 8000 bytes in one batch: more than SEND_SPACE, so the
    # batch is sent in several sendmmsg calls, in order.
    queries = [b"BIG:%d" % (8000 + n) for n in range(12)]
    assert sum(8000 + n for n in range(12)) > udp.SEND_SPACE
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        for query in queries:
            client.sendto(query, address(opened))
        stats = Stats()
        with serving(UdpServer(opened, Responder(), stats, **PATHS[path])):
            answers = [client.recv(16384) for _ in queries]
    assert [len(answer) for answer in answers] == [8000 + n for n in range(12)]
    assert [answer[: len(query)] for answer, query in zip(answers, queries, strict=True)] == queries
    assert stats.udp["sendfail"] == 0


@ON_EVERY_PATH
def test_unsendable_answers_are_counted_and_the_rest_still_sent(path: str) -> None:
    # 65,520 bytes fits the send area but not an IPv4 datagram (EMSGSIZE from
    # the kernel, mid-batch); 70,000 bytes does not even fit the send area.
    queries = [b"one", b"BIG:65520", b"two", b"BIG:70000", b"three"]
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        for query in queries:
            client.sendto(query, address(opened))
        stats = Stats()
        with serving(UdpServer(opened, Responder(), stats, **PATHS[path])):
            answers = [client.recv(4096) for _ in range(3)]
            assert wait_for(lambda: stats.udp["sendfail"] == 2, WAIT), "timed out waiting for two failed sends"
    assert answers == [b"ans:one", b"ans:two", b"ans:three"]
    assert stats.udp["reqs"] == 5


@ON_EVERY_PATH
def test_responder_error_is_logged_and_the_batch_goes_on(path: str, caplog: pytest.LogCaptureFixture) -> None:
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        for query in (b"a", b"BOOM", b"b"):
            client.sendto(query, address(opened))
        with caplog.at_level(logging.ERROR), serving(UdpServer(opened, Responder(), Stats(), **PATHS[path])):
            assert [client.recv(4096) for _ in range(2)] == [b"ans:a", b"ans:b"]
    failures = [record for record in caplog.records if "error answering a UDP query" in record.getMessage()]
    assert len(failures) == 1
    assert "127.0.0.1" in failures[0].getMessage()
    assert failures[0].exc_info is not None


@ON_BATCHED_PATHS
def test_a_batch_read_is_answered_whole_even_when_stop_comes_midway(path: str) -> None:
    # Every datagram read is answered; what was not read stays queued.
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        first = [b"HOLD", b"q1", b"q2", b"q3"]
        for query in first:
            client.sendto(query, address(opened))
        responder = Responder()
        server = UdpServer(opened, responder, Stats(), **PATHS[path])
        server.start()
        assert responder.holding.wait(WAIT)
        late = [b"late1", b"late2"]
        for query in late:
            client.sendto(query, address(opened))
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        assert wait_for(lambda: server.threads.stopping, WAIT), "timed out waiting for the stop request"
        responder.release.set()
        stopper.join(WAIT)
        assert not stopper.is_alive()
        assert sorted(client.recv(4096) for _ in first) == sorted(b"ans:" + query for query in first)
        sock = opened[0].sock
        sock.settimeout(WAIT)
        assert [sock.recv(4096) for _ in late] == late
    assert [query for query, _ in responder.calls] == first


class FlakySend:
    """libc's sendmmsg, but: the first call is interrupted (EINTR), the second
    sends only 2 messages, the third fails with EAGAIN (a full send buffer)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __call__(self, fd: int, headers: Any, count: int, flags: int) -> int:
        self.calls += 1
        if self.calls == 1:
            ctypes.set_errno(errno.EINTR)
            return -1
        if self.calls == 2:
            return int(self.real(fd, headers, min(count, 2), flags))
        if self.calls == 3:
            ctypes.set_errno(errno.EAGAIN)
            return -1
        return int(self.real(fd, headers, count, flags))


def test_partial_and_failed_sends_skip_only_the_failed_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = mmsg.load()
    assert calls is not None
    flaky = FlakySend(calls.sendmmsg)
    monkeypatch.setattr(mmsg, "load", lambda: mmsg.MmsgCalls(calls.recvmmsg, flaky))
    queries = [b"q%d" % n for n in range(6)]
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        for query in queries:
            client.sendto(query, address(opened))
        stats = Stats()
        with serving(UdpServer(opened, Responder(), stats, compiled=False)):
            answers = [client.recv(4096) for _ in range(5)]
            assert wait_for(lambda: stats.udp["sendfail"] == 1, WAIT), "timed out waiting for one failed send"
    # Interrupted: retried whole; q0, q1 sent; q2 failed (EAGAIN); q3..q5 sent.
    assert answers == [b"ans:q0", b"ans:q1", b"ans:q3", b"ans:q4", b"ans:q5"]
    assert flaky.calls == 4
    assert stats.udp["reqs"] == 6


def test_batched_calls_are_used_only_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mmsg.load() is not None  # the test machine runs Linux
    monkeypatch.setattr(mmsg.sys, "platform", "freebsd14")
    assert mmsg.load() is None
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        server = UdpServer(opened, Responder(), Stats(), compiled=False)
        assert server.mmsg_calls is None
        with serving(server):
            client.sendto(b"q", address(opened))
            assert client.recv(4096) == b"ans:q"


def test_layouts_match_linux_headers() -> None:
    # struct mmsghdr and friends as <sys/socket.h> lays them out on 64-bit
    # Linux (x86_64 and aarch64 alike), where pygdnsd runs.
    assert ctypes.sizeof(ctypes.c_void_p) == 8
    assert ctypes.sizeof(mmsg.MsgHdr) == 56
    assert ctypes.sizeof(mmsg.MMsgHdr) == 64
    assert mmsg.MMsgHdr.msg_len.offset == 56
    assert mmsg.MsgHdr.msg_controllen.offset == 40
    assert ctypes.sizeof(mmsg.CMsgHdr) == 16
    assert ctypes.sizeof(mmsg.SockaddrIn) == 16
    assert ctypes.sizeof(mmsg.SockaddrIn6) == 28
    assert mmsg.SockaddrIn6.sin6_addr.offset == 8


def test_one_datagram_per_wake_up_takes_the_single_reply_path(
    monkeypatch: pytest.MonkeyPatch, batch_sizes: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    # At low rates each read returns one datagram (DatagramBatch.answer_one):
    # the same outcomes as in a batch, one query at a time.
    calls = mmsg.load()
    assert calls is not None
    flaky = FlakySend(calls.sendmmsg)
    monkeypatch.setattr(mmsg, "load", lambda: mmsg.MmsgCalls(calls.recvmmsg, flaky))
    single = mmsg.DatagramBatch.answer_one
    singles: list[bool] = []

    def counted(self: mmsg.DatagramBatch, respond: mmsg.Respond, failed: mmsg.Failed) -> int:
        singles.append(True)
        return single(self, respond, failed)

    monkeypatch.setattr(mmsg.DatagramBatch, "answer_one", counted)
    with listening("127.0.0.1") as opened, client_socket("127.0.0.1") as client:
        stats = Stats()
        with caplog.at_level(logging.ERROR), serving(UdpServer(opened, Responder(), stats, compiled=False)):
            client.sendto(b"q0", address(opened))
            assert client.recv(4096) == b"ans:q0"  # its send was interrupted, then retried
            client.sendto(b"q1", address(opened))
            assert wait_for(lambda: stats.udp["sendfail"] == 1, WAIT), "timed out waiting for the send that fails with EAGAIN"
            client.sendto(b"q2", address(opened))
            assert client.recv(4096) == b"ans:q2"
            client.sendto(b"BOOM", address(opened))
            assert wait_for(lambda: stats.udp["reqs"] == 4, WAIT), "timed out waiting for the query the responder fails on"
            client.sendto(b"BIG:70000", address(opened))
            assert wait_for(lambda: stats.udp["sendfail"] == 2, WAIT), "timed out waiting for the answer too big to send"
            client.sendto(b"last", address(opened))
            assert client.recv(4096) == b"ans:last"
    assert stats.udp["reqs"] == 6
    assert flaky.calls == 5  # q0 twice, q1, q2, last
    assert len(singles) == 6
    assert set(batch_sizes) <= {0, 1}
    failures = [record for record in caplog.records if "error answering a UDP query" in record.getMessage()]
    assert len(failures) == 1
