"""TCP serving: one thread per TCP listening socket, each a selectors loop.

DNS over TCP frames each message with a 2-byte length (RFC 1035 4.2.2).
Pipelined queries are answered in order as each arrives. Following
gdnsd.config(5):

* a connection's idle time is reset only when a full transaction completes
  (query read, answer written); one idle longer than the server-side timeout
  is closed (``close_s_ok``);
* an answer that does not fit at once into the socket's send buffer closes
  the connection (``sendfail``): no per-connection write queues to exhaust;
* at ``tcp_clients_per_thread`` connections, a new one replaces the
  longest-idle one (``close_s_kill``).

``stop()`` stops accepting (the listening socket stays open, for a replace),
answers what each connection has already sent with ``closing=True`` (so the
engine sends an edns-tcp-keepalive of 0), then closes the connections.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from pygdnsd.config.options import ListenAddress
from pygdnsd.engine.stats import Stats
from pygdnsd.transport.answerer import Answerer
from pygdnsd.transport.listeners import ListenSocket
from pygdnsd.transport.threads import ServingThreads
from pygdnsd.transport.udp import packed_ip

log = logging.getLogger(__name__)

RECV_CHUNK = 65536
# Bounds the work one wakeup does on one socket, so a busy socket cannot starve the rest.
ACCEPTS_PER_WAKEUP = 64
READS_AT_SHUTDOWN = 16
_WAKE = object()


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Per-listen-address TCP settings (``of`` reads them from the listen address)."""

    idle_timeout: float  # server side: gdnsd uses twice tcp_timeout
    max_clients: int  # tcp_clients_per_thread
    # Carried here for the servers to act on; none of them is implemented
    # yet (PROXY v2 headers, EDNS padding of this address's answers, DSO
    # sessions): off, as when the address does not set them.
    tcp_proxy: bool = False
    tcp_pad: bool = False
    disable_tcp_dso: bool = False

    @classmethod
    def of(cls, address: ListenAddress) -> TcpLimits:
        # gdnsd.config(5): the server-side idle timeout is double tcp_timeout.
        return cls(
            idle_timeout=2.0 * address.tcp_timeout,
            max_clients=address.tcp_clients_per_thread,
            tcp_proxy=address.tcp_proxy,
            tcp_pad=address.tcp_pad,
            disable_tcp_dso=address.disable_tcp_dso,
        )


class _Connection:
    __slots__ = ("buf", "client_ip", "fd", "last", "sock")

    def __init__(self, sock: socket.socket, client_ip: bytes, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip
        self.buf = bytearray()
        self.last = now


class _Worker:
    """The state of one serving thread: its listening socket and its connections."""

    def __init__(
        self, server: TcpServer, listener: ListenSocket, limits: TcpLimits
    ) -> None:
        self.server = server
        self.listener = listener
        self.limits = limits
        self.counts = server.stats.tcp.values
        self.respond = server.responder.respond
        self.selector = selectors.DefaultSelector()
        # Ordered by last completed transaction: the first one is the most idle.
        self.conns: OrderedDict[int, _Connection] = OrderedDict()

    def run(self) -> None:
        server = self.server
        listen_sock = self.listener.sock
        listen_sock.setblocking(False)
        selector = self.selector
        selector.register(listen_sock, selectors.EVENT_READ, None)
        threads = server.threads
        selector.register(threads.wake_fd, selectors.EVENT_READ, _WAKE)
        try:
            while not threads.stopping:
                events = selector.select(self._next_timeout())
                for key, _mask in events:
                    if key.data is None:
                        self._accept()
                    elif key.data is not _WAKE:
                        self._read(key.data, closing=False)
                self._expire_idle()
            selector.unregister(listen_sock)
            for conn in list(self.conns.values()):
                self._finish(conn)
        finally:
            for conn in list(self.conns.values()):
                self._close(conn, "close_s_ok")
            selector.close()

    def _next_timeout(self) -> float | None:
        if not self.conns:
            return None
        oldest = next(iter(self.conns.values()))
        return max(0.0, oldest.last + self.limits.idle_timeout - time.monotonic())

    def _expire_idle(self) -> None:
        if not self.conns:
            return
        deadline = time.monotonic() - self.limits.idle_timeout
        while self.conns:
            oldest = next(iter(self.conns.values()))
            if oldest.last > deadline:
                return
            self._close(oldest, "close_s_ok")

    def _accept(self) -> None:
        listen_sock = self.listener.sock
        family = listen_sock.family
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, addr = listen_sock.accept()
            except BlockingIOError:
                return
            except OSError:
                self.counts["acceptfail"] += 1
                return
            self.counts["conns"] += 1
            if len(self.conns) >= self.limits.max_clients:
                self._close(next(iter(self.conns.values())), "close_s_kill")
            sock.setblocking(False)
            conn = _Connection(sock, packed_ip(family, addr[0]), time.monotonic())
            self.conns[conn.fd] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            # With TCP_DEFER_ACCEPT the first query is usually already here.
            self._read(conn, closing=False)

    def _close(self, conn: _Connection, reason: str) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        self.counts[reason] += 1
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.sock.close()

    def _read(self, conn: _Connection, closing: bool) -> bool:
        """Read once and answer every complete query; False once the connection is closed."""
        try:
            data = conn.sock.recv(RECV_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            self.counts["recvfail"] += 1
            self._close(conn, "close_s_err")
            return False
        if not data:
            self._close(conn, "close_c")
            return False
        buf = conn.buf
        buf += data
        return self._answer(conn, closing)

    def _answer(self, conn: _Connection, closing: bool) -> bool:
        """Answer every complete query in the buffer, in order, with one send for all."""
        buf = conn.buf
        counts = self.counts
        frames: list[bytes] = []
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size == 0:
                counts["recvfail"] += 1
                self._send(conn, frames)
                self._close(conn, "close_s_err")
                return False
            if len(buf) < size + 2:
                break
            query = bytes(buf[2 : size + 2])
            del buf[: size + 2]
            counts["reqs"] += 1
            try:
                answer = self.respond(query, conn.client_ip, True, closing)
            except Exception:
                log.exception("error answering a TCP query")
                answer = None
            if answer is None:
                self._send(conn, frames)
                self._close(conn, "close_s_err")
                return False
            frames.append(len(answer).to_bytes(2, "big") + answer)
        return self._send(conn, frames)

    def _send(self, conn: _Connection, frames: list[bytes]) -> bool:
        """Send framed answers at once; a partial write means a stalled client: close it."""
        if not frames:
            return True
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            sent = conn.sock.send(data)
        except OSError:
            sent = -1
        if sent != len(data):
            self.counts["sendfail"] += 1
            self._close(conn, "close_s_err")
            return False
        conn.last = time.monotonic()
        self.conns.move_to_end(conn.fd)
        return True

    def _finish(self, conn: _Connection) -> None:
        """At shutdown: answer whatever the client already sent, then close."""
        if not self._answer(conn, closing=True):
            return
        for _ in range(READS_AT_SHUTDOWN):
            try:
                data = conn.sock.recv(RECV_CHUNK)
            except OSError:
                break  # EAGAIN included: nothing more was sent
            if not data:
                self._close(conn, "close_c")
                return
            conn.buf += data
            if not self._answer(conn, closing=True):
                return
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        self._close(conn, "close_s_ok")


class TcpServer:
    """Serves every TCP listening socket it is given, one thread each."""

    def __init__(
        self,
        listeners: Sequence[tuple[ListenSocket, TcpLimits]],
        responder: Answerer,
        stats: Stats,
    ) -> None:
        self.listeners = tuple(listeners)
        self.responder = responder
        self.stats = stats
        self.threads = ServingThreads("TCP")

    def start(self) -> None:
        for listener, limits in self.listeners:
            worker = _Worker(self, listener, limits)
            self.threads.spawn(worker.run, f"tcp {listener.spec.label}#{listener.spec.index}")

    def request_stop(self) -> None:
        """Ask every thread to stop, without waiting (see ``stop``)."""
        self.threads.request_stop()

    def stop(self) -> None:
        """Stop accepting, answer what was read, close every connection; then return."""
        self.threads.stop()
