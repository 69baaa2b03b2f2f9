"""TCP serving: one thread per TCP listening socket, each a selectors loop.

DNS over TCP frames each message with a 2-byte length (RFC 1035 4.2.2).
Pipelined queries are answered in order as each arrives. Following
gdnsd.config(5):

* a connection's idle time is reset only when a full transaction completes
  (query read, answer written), a DSO keepalive excepted; one idle longer
  than the server-side timeout (twice ``tcp_timeout``) is closed
  (``close_s_ok``);
* an answer that does not fit at once into the socket's send buffer closes
  the connection (``sendfail``): no per-connection write queues to exhaust;
  so does a request length outside 12..1024 bytes, or the end of the stream
  inside a message (``recvfail``);
* at ``tcp_clients_per_thread`` connections, a new one replaces the
  longest-idle one (``close_s_kill``);
* on a ``tcp_proxy`` listener every connection starts with a PROXY header
  (``transport.proxy``); its client address is the connection's from then
  on. A connection whose header is refused is dropped (``proxy_fail``);
* a DSO request (RFC 8490, ``engine.dso``) is answered here, unless
  ``disable_tcp_dso``: a Keepalive opens the connection's DSO session, whose
  answers then carry no edns-tcp-keepalive option (``engine.tcp_shape``).
  DSO messages are not DNS requests: they count in ``dso_*``, not ``reqs``
  (gdnsd's ``reqs`` sums the rcodes answered). A DSO protocol error aborts
  the connection (``close_s_err``).

``stop()`` stops accepting (the listening socket stays open, for a replace)
and answers what each connection has already sent with keepalive 0, then:
a connection outside a DSO session is closed at once (``close_s_ok``); a DSO
session gets a unidirectional Keepalive with inactivity 0 first and up to
``DSO_GRACE_SECONDS`` to finish its queries and close (``close_c``), as
gdnsd gives it; one still open then is dropped (``close_s_err``).
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

from pygdnsd.config.options import ListenAddress, ListenOptions
from pygdnsd.engine import dso
from pygdnsd.engine.stats import Stats
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.transport import proxy
from pygdnsd.transport.answerer import Answerer
from pygdnsd.transport.listeners import ListenSocket
from pygdnsd.transport.threads import JOIN_SECONDS, ServingThreads
from pygdnsd.transport.udp import packed_ip

log = logging.getLogger(__name__)

RECV_CHUNK = 65536
# gdnsd takes requests of 12 (a header) to 1024 bytes (its DNS_RECV_SIZE): a
# length outside them is a broken stream, closed at once (``recvfail``).
MIN_REQUEST = 12
MAX_REQUEST = 1024
# Bounds the work one wakeup does on one socket, so a busy socket cannot starve the rest.
ACCEPTS_PER_WAKEUP = 64
READS_AT_SHUTDOWN = 16
# How long a DSO session told to close (inactivity 0) may take to do so: gdnsd's grace.
DSO_GRACE_SECONDS = 5.0
_WAKE = object()


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Per-listen-address TCP settings (``of`` reads them from the listen address)."""

    idle_timeout: float  # server side: gdnsd uses twice tcp_timeout
    max_clients: int  # tcp_clients_per_thread
    tcp_proxy: bool = False  # every connection starts with a PROXY header
    tcp_pad: bool = False  # pad answers with an OPT, and DSO messages, to 468 bytes
    disable_tcp_dso: bool = False
    # Client side, signalled in edns-tcp-keepalive and DSO inactivity.
    tcp_timeout: int = ListenOptions.tcp_timeout

    @classmethod
    def of(cls, address: ListenAddress) -> TcpLimits:
        # gdnsd.config(5): the server-side idle timeout is double tcp_timeout.
        return cls(
            idle_timeout=2.0 * address.tcp_timeout,
            max_clients=address.tcp_clients_per_thread,
            tcp_proxy=address.tcp_proxy,
            tcp_pad=address.tcp_pad,
            disable_tcp_dso=address.disable_tcp_dso,
            tcp_timeout=address.tcp_timeout,
        )


class _Connection:
    __slots__ = ("awaiting_proxy", "buf", "client_ip", "dso", "fd", "last", "sock")

    def __init__(self, sock: socket.socket, client_ip: bytes, now: float, awaiting_proxy: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip
        self.buf = bytearray()
        self.last = now
        self.awaiting_proxy = awaiting_proxy
        self.dso = False  # a DSO session is established


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
        timeout, pad = limits.tcp_timeout, limits.tcp_pad
        self.shape_open = TcpShape.of(timeout, pad)
        self.shape_closing = TcpShape.of(timeout, pad, closing=True)
        self.shape_dso = TcpShape.of(timeout, pad, dso=True)

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
                        self._consume(key.data, closing=False)
                self._expire_idle()
            selector.unregister(listen_sock)
            selector.unregister(threads.wake_fd)
            for conn in list(self.conns.values()):
                self._finish(conn)
            self._grace()
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
            if self.limits.tcp_proxy:
                self.counts["proxy"] += 1
            if len(self.conns) >= self.limits.max_clients:
                self._close(next(iter(self.conns.values())), "close_s_kill")
            sock.setblocking(False)
            conn = _Connection(sock, packed_ip(family, addr[0]), time.monotonic(), self.limits.tcp_proxy)
            self.conns[conn.fd] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            # With TCP_DEFER_ACCEPT the first query is usually already here.
            self._consume(conn, closing=False)

    def _close(self, conn: _Connection, reason: str) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        self.counts[reason] += 1
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.sock.close()

    def _recv(self, conn: _Connection) -> bool:
        """Read once into the connection's buffer; False once the connection is closed."""
        try:
            data = conn.sock.recv(RECV_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            self.counts["recvfail"] += 1
            self._close(conn, "close_s_err")
            return False
        if not data:
            self._end_of_stream(conn)
            return False
        conn.buf += data
        return True

    def _end_of_stream(self, conn: _Connection) -> None:
        """The client closed: cleanly between messages, else in the middle of one (gdnsd: ``recvfail``)."""
        if conn.buf:
            self.counts["recvfail"] += 1
            self._close(conn, "close_s_err")
        else:
            self._close(conn, "close_c")

    def _consume(self, conn: _Connection, closing: bool) -> bool:
        """Read once and answer every complete query; False once the connection is closed."""
        if not self._recv(conn):
            return False
        return self._answer(conn, closing)

    def _take_proxy_header(self, conn: _Connection) -> bool:
        """Strip the PROXY header off the buffer once whole; False when the connection was dropped for it."""
        try:
            header = proxy.parse(bytes(conn.buf[: proxy.MAX_HEADER]))
        except proxy.ProxyHeaderError as exc:
            log.debug("PROXY parse fail from %s, resetting connection: %s", _peer(conn), exc)
            self.counts["proxy_fail"] += 1
            self._close(conn, "close_s_err")
            return False
        if header is not None:
            del conn.buf[: header.length]
            if header.client_ip is not None:
                conn.client_ip = header.client_ip
            conn.awaiting_proxy = False
        return True

    def _answer(self, conn: _Connection, closing: bool) -> bool:
        """Answer every complete query in the buffer, in order, with one send for all."""
        if conn.awaiting_proxy and not self._take_proxy_header(conn):
            return False
        if conn.awaiting_proxy:
            return True
        buf = conn.buf
        counts = self.counts
        frames: list[bytes] = []
        # A transaction other than a DSO keepalive: the connection is not idle.
        active = False
        with_dso = not self.limits.disable_tcp_dso
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size < MIN_REQUEST or size > MAX_REQUEST:
                counts["recvfail"] += 1
                self._send(conn, frames, active)
                self._close(conn, "close_s_err")
                return False
            if len(buf) < size + 2:
                break
            query = bytes(buf[2 : size + 2])
            del buf[: size + 2]
            if with_dso and dso.is_request(query):
                reply = dso.answer(query, 0 if closing else self.limits.tcp_timeout * 1000, self.limits.tcp_pad)
                if reply.response is None:
                    counts["dso_protoerr"] += 1
                    self._send(conn, frames, active)
                    self._close(conn, "close_s_err")
                    return False
                if reply.outcome is dso.Outcome.KEEPALIVE:
                    if not conn.dso:
                        conn.dso = True
                        counts["dso_estab"] += 1
                else:
                    counts["dso_typeni"] += 1
                    active = True
                frames.append(_framed(reply.response))
                continue
            counts["reqs"] += 1
            active = True
            shape = self.shape_dso if conn.dso else self.shape_closing if closing else self.shape_open
            try:
                answer = self.respond(query, conn.client_ip, True, shape)
            except Exception:
                log.exception("error answering a TCP query from %s", _client(conn))
                answer = None
            if answer is None:
                self._send(conn, frames, active)
                self._close(conn, "close_s_err")
                return False
            frames.append(_framed(answer))
        return self._send(conn, frames, active)

    def _send(self, conn: _Connection, frames: list[bytes], active: bool = True) -> bool:
        """Send framed messages at once; a partial write means a stalled client: close it.

        ``active``: a transaction completed, so the connection's idle time starts over.
        """
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
        if active:
            conn.last = time.monotonic()
            self.conns.move_to_end(conn.fd)
        return True

    def _finish(self, conn: _Connection) -> None:
        """At shutdown: a DSO session is told to close; then answer whatever the client already sent.

        A connection outside a DSO session is closed after that; a session
        is left for ``_grace``.
        """
        if conn.dso and not self._send(conn, [_framed(dso.closing_keepalive(self.limits.tcp_pad))], False):
            return
        if not self._answer(conn, closing=True):
            return
        for _ in range(READS_AT_SHUTDOWN):
            try:
                data = conn.sock.recv(RECV_CHUNK)
            except OSError:
                break  # EAGAIN included: nothing more was sent
            if not data:
                self._end_of_stream(conn)
                return
            conn.buf += data
            if not self._answer(conn, closing=True):
                return
        if conn.dso:
            return
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        self._close(conn, "close_s_ok")

    def _grace(self) -> None:
        """Serve the DSO sessions left (told to close) until they close, for up to ``DSO_GRACE_SECONDS``."""
        deadline = time.monotonic() + DSO_GRACE_SECONDS
        while self.conns:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _mask in self.selector.select(left):
                self._consume(key.data, closing=True)
        for conn in list(self.conns.values()):
            self._close(conn, "close_s_err")  # gdnsd resets them


def _framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def _client(conn: _Connection) -> str:
    """The client as the engine sees it: the PROXY header's, if any."""
    family = socket.AF_INET6 if len(conn.client_ip) == 16 else socket.AF_INET
    return socket.inet_ntop(family, conn.client_ip)


def _peer(conn: _Connection) -> str:
    with contextlib.suppress(OSError):
        host, port = conn.sock.getpeername()[:2]
        return f"{host}:{port}"
    return "a closed socket"


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
        # A stopping thread may give DSO sessions their grace before it ends.
        self.threads = ServingThreads("TCP", join_seconds=DSO_GRACE_SECONDS + JOIN_SECONDS)

    def start(self) -> None:
        for listener, limits in self.listeners:
            worker = _Worker(self, listener, limits)
            self.threads.spawn(worker.run, f"tcp {listener.spec.label}#{listener.spec.index}")

    def request_stop(self) -> None:
        """Ask every thread to stop, without waiting (see ``stop``)."""
        self.threads.request_stop()

    def stop(self) -> None:
        """Stop accepting, answer what was read, close every connection (DSO sessions: see ``_grace``); then return."""
        self.threads.stop()
