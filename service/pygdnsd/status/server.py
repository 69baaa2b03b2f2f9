"""The HTTP status listener: one thread, one selectors loop, a bounded number of short connections.

The daemon opens the ``http_listen`` sockets with its others (and a replace
hands them over like the ``tcp_control`` ones, ``HTTP_LISTEN``); this server
answers on them from a thread of its own. Each connection carries one
request (``http``): it is read, answered by ``Endpoints``, written, and the
connection closed, gracefully (our side shut first, then what the client
still sends is read and dropped for a moment, so our answer is not lost to
a reset).

What a hostile or broken client can cost is bounded:

* a client outside ``http_allow`` gets a fixed 403 at accept, and nothing
  it sends is read as a request;
* at most ``max_clients`` connections at once: one more evicts the oldest
  still sending its request (or, failing that, is closed itself), so a
  thousand idle connections cannot keep a scraper out;
* a request head over ``http.MAX_HEAD`` bytes is refused, so each client
  holds at most that much of our memory, plus its answer;
* every connection must be done within ``timeout`` seconds (gdnsd 2's
  ``http_timeout``), so slow clients are dropped.

In a replace the old daemon stops accepting (``pause_accepting``) once it
has stopped serving DNS and its counters are final, and the new daemon
starts accepting once it has added those final counters to its own: the two
never answer side by side, so a scraper never sees the old daemon's totals
after the new one's larger ones. Connections that arrive in between wait
in the kernel socket both hold. ``close`` stops accepting and gives the
connections already accepted a moment to get their answers.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pygdnsd.config.options import Network
from pygdnsd.control.tcp_listeners import Role, label
from pygdnsd.status import http
from pygdnsd.transport.listeners import ListenSocket
from pygdnsd.transport.nonblocking import received

log = logging.getLogger(__name__)

# Scrapers and browsers queue here while a replace hands the listeners over.
HTTP_LISTEN = Role("http_listen", "HTTP listener", 128)
CLOSE_GRACE = 2.0  # how long ``close`` lets accepted connections finish
LINGER_SECONDS = 1.0  # reading what a client sends after its answer, before closing
LINGER_BYTES = 1 << 16  # ... and at most this much of it: a client that sends on is cut off
_LOOP_TICK = 0.5
_RECV_SIZE = 4096
_ACCEPT_BATCH = 64
_FORBIDDEN = http.encode(http.HttpError(403, "your address is not in http_allow").response())


class Answerer(Protocol):
    def answer(self, request: http.Request) -> http.Response:
        """The response; may raise HttpError (or anything, which answers 500)."""
        ...

    def tick(self) -> None:
        """Called on every turn of the loop, at least every half second."""
        ...


class _Phase(enum.Enum):
    READING = "reading"
    WRITING = "writing"
    LINGERING = "lingering"


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    deadline: float
    accepted: float
    inbuf: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    sent: int = 0
    phase: _Phase = _Phase.READING
    events: int = 0
    lingered: int = 0


def allowed(peer: str, networks: Sequence[Network]) -> bool:
    """Whether ``peer`` (an address as accept() gives it) is in one of ``networks``."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class StatusServer:
    def __init__(
        self,
        listeners: Sequence[ListenSocket],
        answerer: Answerer,
        *,
        allow: Sequence[Network],
        max_clients: int,
        timeout: float,
    ) -> None:
        self.listeners = list(listeners)
        self.answerer = answerer
        self.allow = tuple(allow)
        self.max_clients = max_clients
        self.timeout = timeout
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._clients: dict[int, _Client] = {}
        self._closing = threading.Event()
        self._accepting = True
        self._listening = False
        self._not_listening = threading.Event()  # set by the loop once it stopped accepting
        self._thread: threading.Thread | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        for listener in self.listeners:
            listener.sock.setblocking(False)
            log.info("%s: serving the status page, /metrics and /json", label(listener.spec, HTTP_LISTEN))
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="status-http", daemon=True)
        self._thread.start()

    def pause_accepting(self) -> None:
        """Leave new connections in the listening sockets' queues (for a successor); answer the accepted ones.

        Returns once the loop accepts no more (or it does not run).
        """
        self._accepting = False
        self._not_listening.clear()
        self._wake()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self._not_listening.wait(CLOSE_GRACE)

    def close(self) -> None:
        """Stop accepting, let accepted connections finish (``CLOSE_GRACE`` at most), close everything."""
        self._closing.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_GRACE + 5.0)
        if thread is None:
            self._shutdown()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # --- the loop --------------------------------------------------------------

    def _sync_listening(self) -> None:
        wanted = self._accepting and not self._closing.is_set()
        if wanted != self._listening:
            for listener in self.listeners:
                if wanted:
                    self._selector.register(listener.sock, selectors.EVENT_READ, listener)
                else:
                    self._selector.unregister(listener.sock)
            self._listening = wanted
        if not wanted:
            self._not_listening.set()

    def _run(self) -> None:
        grace_ends: float | None = None
        try:
            while True:
                self._sync_listening()
                if self._closing.is_set() and grace_ends is None:
                    grace_ends = time.monotonic() + CLOSE_GRACE
                if grace_ends is not None and (not self._clients or time.monotonic() >= grace_ends):
                    return
                for key, events in self._selector.select(timeout=_LOOP_TICK):
                    if isinstance(key.data, ListenSocket):
                        self._accept(key.data)
                    elif key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._service(key.data, events)
                self._expire()
                self.answerer.tick()
        except Exception:  # pragma: no cover - a bug here must not pass silently
            log.exception("status: the HTTP loop crashed")
        finally:
            self._shutdown()

    def _accept(self, listener: ListenSocket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("%s: accept() failed: %s", label(listener.spec, HTTP_LISTEN), exc.strerror or exc)
                return
            sock.setblocking(False)
            if len(self._clients) >= self.max_clients and not self._evict_one():
                sock.close()
                continue
            now = time.monotonic()
            client = _Client(sock, now + self.timeout, now)
            self._clients[sock.fileno()] = client
            if allowed(str(peer[0]), self.allow):
                self._watch(client, selectors.EVENT_READ)
            else:
                # Answered without reading a byte of what it sent (that is only drained, then dropped).
                log.debug("status: refusing %s (not in http_allow)", peer[0])
                client.out = _FORBIDDEN
                client.phase = _Phase.WRITING
                self._flush(client)

    def _evict_one(self) -> bool:
        """Make room: drop a lingering client, else the oldest still sending its request."""
        lingering = [c for c in self._clients.values() if c.phase is _Phase.LINGERING]
        reading = [c for c in self._clients.values() if c.phase is _Phase.READING]
        victims = lingering or reading
        if not victims:
            return False
        self._drop(min(victims, key=lambda c: c.accepted))
        return True

    def _service(self, client: _Client, events: int) -> None:
        if self._clients.get(client.sock.fileno()) is not client:
            return
        if client.phase is _Phase.WRITING and events & selectors.EVENT_WRITE:
            self._flush(client)
        elif client.phase is _Phase.READING and events & selectors.EVENT_READ:
            self._read(client)
        elif client.phase is _Phase.LINGERING and events & selectors.EVENT_READ:
            self._linger(client)

    def _read(self, client: _Client) -> None:
        data = received(client.sock, _RECV_SIZE)
        if data is None:
            return
        if not data:
            self._drop(client)  # gone (or failed) before asking anything
            return
        client.inbuf += data
        try:
            request = http.parse_head(client.inbuf)
        except http.HttpError as exc:
            self._respond(client, exc.response(), head_only=False)
            return
        if request is None:
            return
        try:
            response = self.answerer.answer(request)
        except http.HttpError as exc:
            response = exc.response()
        except Exception:
            log.exception("status: answering %s %s failed", request.method, request.path)
            response = http.HttpError(500, "see the daemon's log").response()
        self._respond(client, response, head_only=request.method == "HEAD")

    def _respond(self, client: _Client, response: http.Response, head_only: bool) -> None:
        client.inbuf = bytearray()
        client.out = http.encode(response, head_only)
        client.phase = _Phase.WRITING
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            client.sent += client.sock.send(memoryview(client.out)[client.sent :])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(client)
            return
        if client.sent < len(client.out):
            self._watch(client, selectors.EVENT_WRITE)
            return
        # All sent: close our side, then read (and drop) what the client still sends for a moment,
        # so closing with unread data does not reset the connection under our answer.
        client.out = b""
        client.phase = _Phase.LINGERING
        client.deadline = min(client.deadline, time.monotonic() + LINGER_SECONDS)
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(client)
            return
        self._watch(client, selectors.EVENT_READ)

    def _linger(self, client: _Client) -> None:
        data = received(client.sock, _RECV_SIZE)
        if data is None:
            return
        client.lingered += len(data)
        if not data or client.lingered > LINGER_BYTES:
            self._drop(client)

    def _expire(self) -> None:
        now = time.monotonic()
        for client in list(self._clients.values()):
            if now < client.deadline:
                continue
            if client.phase is _Phase.READING and client.inbuf:
                with contextlib.suppress(OSError):  # best effort: it is too slow to wait for
                    client.sock.send(http.encode(http.HttpError(408, "the request took too long").response()))
            self._drop(client)

    def _watch(self, client: _Client, events: int) -> None:
        if client.events == events:
            return
        if client.events:
            self._selector.modify(client.sock, events, client)
        else:
            self._selector.register(client.sock, events, client)
        client.events = events

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.get(fd) is client:
            del self._clients[fd]
        if client.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(client.sock)
            client.events = 0
        client.sock.close()

    def _shutdown(self) -> None:
        self._not_listening.set()
        for client in list(self._clients.values()):
            self._drop(client)
        with contextlib.suppress(OSError):
            self._selector.close()
        # Our copies only: in a replace the successor holds the same listening sockets.
        for listener in self.listeners:
            listener.sock.close()
        self._wake_r.close()
        self._wake_w.close()
