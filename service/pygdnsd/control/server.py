"""The daemon end of the control socket: one thread, one selectors loop, many clients.

The daemon supplies its unix listening socket, any ``tcp_control``
listeners, and a ControlHandler. Every listener is served by the same loop
and the same request handling; each listener's ``access.Access`` decides
which requests its clients may make (anything else is RESP_DENY), and each
has its own cap on clients, so a flood of TCP connections cannot push out
the unix socket's. Read-only requests are answered on the loop thread;
state-changing ones run one at a time on a worker thread (a zone reload may
take a while, and status must keep answering meanwhile). After
acknowledging REQ_STOP or REQ_REPL the connection is held open and never
read again: the daemon's exit closes it, which is how the client observes
the exit (ControlSocket.md).

A REQ_TAK1 (a replacement daemon taking over) takes its connection out of the
loop onto a thread of its own running ``replace.old_daemon.serve_takeover``; until it
ends, other state-changing requests and other takeovers are answered
RESP_LATR (the client retries), as gdnsd does.

Garbage never harms the loop: unknown keys get RESP_UNK (RESP_DENY over
TCP), request sizes that make the stream untrustworthy close that
connection, and clients idle (or stalled mid-message) longer than
``idle_timeout`` are dropped. As gdnsd does, a connection closes when a
read ends part-way into a header: gdnsd reads one 8-byte header per read
and drops a client whose read comes up short (observed on 3.8.1, unix and
TCP alike), which also rids us of clients trickling bytes.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from pygdnsd.control import access as control_access
from pygdnsd.control import protocol
from pygdnsd.control.access import Access, ControlListener
from pygdnsd.control.protocol import RequestKey, ResponseKey
from pygdnsd.errors import describe
from pygdnsd.replace import old_daemon
from pygdnsd.transport.nonblocking import received

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_CLIENTS = 128  # per listener
UNIX_LABEL = "control socket"
_RECV_SIZE = 1 << 16
# A client that does not read its answers is not read either once this many
# bytes of answers wait for it, so pipelined requests (STAT answers run to
# kilobytes) cannot grow our memory without bound; one answer may go over.
_OUTBUF_HIGH = 1 << 18
_LOOP_TICK = 0.5


class Outcome(enum.Enum):
    """How a state-changing request ended, as the client will hear it."""

    ACK = ResponseKey.ACK
    FAIL = ResponseKey.FAIL
    LATER = ResponseKey.LATR  # a replace is in progress: the client retries
    DENY = ResponseKey.DENY


@dataclass(frozen=True, slots=True)
class Failed:
    """A state-changing request failed, and why: a client that asks hears ``reason`` with RESP_FAIL."""

    reason: str


class ControlHandler(Protocol):
    """What the daemon does for each request. Methods may raise: that answers FAIL."""

    def status(self) -> tuple[tuple[int, int, int], int]:
        """(version, pid) for REQ_INFO."""
        ...

    def stats_json(self) -> bytes: ...

    def states_json(self) -> bytes: ...

    def reload_zones(self) -> Outcome | Failed:
        """Reload synchronously; ACK only once the new data is served, else why not."""
        ...

    def stop(self) -> Outcome:
        """Begin shutting down (ACK), or refuse. The daemon exits soon after an ACK."""
        ...

    def replace(self) -> Outcome:
        """Replace the daemon; ACK only once the new daemon serves requests."""
        ...

    def acme_add(self, challenges: Sequence[protocol.AcmeChallenge]) -> Outcome | Failed:
        """Serve ``challenges`` (ACK once every process does), or why not."""
        ...

    def acme_flush(self) -> Outcome:
        """Stop serving every challenge (ACK once no process does)."""
        ...


class TakeoverHost(old_daemon.TakeoverSource, Protocol):
    """A daemon that can hand itself over to a replacement."""

    def expected_replacement(self) -> int | None:
        """The PID of a replacement we spawned ourselves (REQ_REPL): no other may take over."""
        ...

    def handed_over(self, connection: socket.socket) -> None:
        """The takeover finished: exit now. ``connection`` closes with our exit."""
        ...


def bind_unix_listener(path: str, backlog: int = 64) -> socket.socket:
    """A listening unix socket at ``path`` (0600), replacing a stale socket file."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    listener: ControlListener
    last_activity: float
    reader: protocol.RequestReader
    outbuf: bytearray = field(default_factory=bytearray)
    read_filled: bool = False  # the last read filled our buffer: more may be queued
    busy: bool = False  # a request is with the worker
    held: bool = False  # acknowledged stop/replace: leave open until the daemon exits
    events: int = 0  # what the selector watches for; 0 when unregistered

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    @property
    def backlogged(self) -> bool:
        return len(self.outbuf) >= _OUTBUF_HIGH


class ControlServer:
    """Serves the control protocol on ``listener`` and ``tcp_listeners`` from its own thread.

    ``access`` is what clients of ``listener`` may ask (everything, for the
    unix socket); each TCP listener carries its own. ``close`` ends the
    thread and closes every connection and listener; the daemon calls it
    last, just before it exits.
    """

    def __init__(
        self,
        listener: socket.socket,
        handler: ControlHandler,
        *,
        access: Access = control_access.LOCAL,
        tcp_listeners: Sequence[ControlListener] = (),
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        takeover_host: TakeoverHost | None = None,
    ) -> None:
        self.listener = listener
        self.listeners = (ControlListener(listener, access, UNIX_LABEL), *tcp_listeners)
        self.handler = handler
        self.takeover_host = takeover_host
        self._takeover_thread: threading.Thread | None = None
        self._handed_over = False  # for good: a new daemon serves the control socket now
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._clients: dict[int, _Client] = {}
        self._done: queue.SimpleQueue[tuple[_Client, protocol.Response, bool]] = queue.SimpleQueue()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-worker")
        self._closing = threading.Event()
        self._accepting = True
        self._listener_watched = False
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        for listener in self.listeners:
            listener.sock.setblocking(False)
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="control-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close every connection (held ones too) and the listener."""
        self._closing.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        self._worker.shutdown(wait=False, cancel_futures=True)

    def pause_accepting(self) -> None:
        """Leave new connections queued in the kernel, on every listener (a takeover hands them over)."""
        self._accepting = False
        self._wake()

    def resume_accepting(self) -> None:
        self._accepting = True
        self._wake()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # --- the loop --------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                self._sync_listener_interest()
                for key, events in self._selector.select(timeout=self._tick()):
                    if isinstance(key.data, ControlListener):
                        self._accept(key.data)
                    elif key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self._service(key.data, events)
                self._finish_worker_results()
                self._expire_idle()
        except Exception:  # pragma: no cover - a bug here must not go unnoticed
            log.exception("control socket loop crashed")
        finally:
            self._shutdown()

    def _tick(self) -> float:
        return min(_LOOP_TICK, self.idle_timeout)

    def _sync_listener_interest(self) -> None:
        if self._accepting and not self._listener_watched:
            for listener in self.listeners:
                self._selector.register(listener.sock, selectors.EVENT_READ, listener)
        elif not self._accepting and self._listener_watched:
            for listener in self.listeners:
                self._selector.unregister(listener.sock)
        self._listener_watched = self._accepting

    def _accept(self, listener: ControlListener) -> None:
        # Bounded: drain what the kernel has queued, up to one batch.
        for _ in range(64):
            try:
                sock, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("%s: accept() failed: %s", listener.label, exc)
                return
            sock.setblocking(False)
            if self._count_clients(listener) >= self.max_clients:
                self._evict_one(listener)
            reader = protocol.RequestReader(payloads=listener.access.payloads)
            client = _Client(sock, listener, time.monotonic(), reader)
            self._clients[client.fd] = client
            self._update_interest(client)

    def _count_clients(self, listener: ControlListener) -> int:
        return sum(1 for client in self._clients.values() if client.listener is listener)

    def _evict_one(self, listener: ControlListener) -> None:
        """Make room by dropping the listener's longest-idle client that is not mid-operation."""
        candidates = [
            c for c in self._clients.values() if c.listener is listener and not c.busy and not c.held
        ]
        if candidates:
            victim = min(candidates, key=lambda c: c.last_activity)
            log.warning("%s: too many clients, dropping the longest idle", listener.label)
            self._drop(victim)

    def _service(self, client: _Client, events: int) -> None:
        if client.fd not in self._clients:
            return
        if events & selectors.EVENT_WRITE:
            self._flush(client)
            if client.fd in self._clients and not client.backlogged and client.reader.buffered:
                self._dispatch_ready(client)  # requests held back while it was backlogged
        if events & selectors.EVENT_READ and client.fd in self._clients:
            self._read(client)

    def _read(self, client: _Client) -> None:
        data = received(client.sock, _RECV_SIZE)
        if data is None:
            return
        if not data:
            self._drop(client)
            return
        client.last_activity = time.monotonic()
        client.read_filled = len(data) == _RECV_SIZE
        try:
            client.reader.feed(data)
        except protocol.ProtocolError as exc:
            log.error("%s: %s, closing", client.listener.label, exc)
            self._drop(client)
            return
        self._dispatch_ready(client)

    def _dispatch_ready(self, client: _Client) -> None:
        """Handle buffered requests one at a time, stopping while one is with the worker."""
        for _ in range(1024):  # bounded by what the reader's buffer can hold
            if client.busy or client.held or client.backlogged or client.fd not in self._clients:
                return
            try:
                request = client.reader.next_request()
            except protocol.ProtocolError as exc:
                log.error("%s: %s, closing", client.listener.label, exc)
                self._drop(client)
                return
            if request is None:
                if client.reader.mid_header and not client.read_filled:
                    log.debug("%s: a read ended inside a header, closing", client.listener.label)
                    self._drop(client)
                return
            self._handle(client, request)
        self._update_interest(client)

    # --- requests --------------------------------------------------------

    def _handle(self, client: _Client, request: protocol.Request) -> None:
        key = request.key
        listener = client.listener
        if not listener.access.allows(key):
            # Debug only: over TCP anyone who can connect could fill the log.
            log.debug("%s: denying %s (%s)", listener.label, protocol.key_name(key), listener.access.describe())
            self._send(client, protocol.response(ResponseKey.DENY))
            return
        if key not in RequestKey._value2member_map_:
            log.error("%s: unknown request %s", listener.label, protocol.key_name(key))
            self._send(client, protocol.response(ResponseKey.UNK))
            return
        rkey = RequestKey(key)
        if rkey in protocol.READONLY_REQUESTS:
            self._send(client, self._answer_readonly(rkey))
            return
        if self.takeover_running:
            # Retry once the takeover ended: in a new daemon, or in this one again.
            self._send(client, protocol.response(ResponseKey.LATR))
            return
        if rkey in protocol.TAKEOVER_REQUESTS:
            if rkey == RequestKey.TAK1 and self.takeover_host is not None:
                self._start_takeover(client, request)
            else:
                log.warning("control socket: refusing %s outside a takeover", protocol.key_name(key))
                self._send(client, protocol.response(ResponseKey.FAIL))
            return
        work = self._state_change(rkey, request)
        client.busy = True
        self._update_interest(client)
        future = self._worker.submit(work)
        limit = protocol.reason_limit(request)
        future.add_done_callback(lambda f: self._worker_done(client, rkey, f, limit))

    @property
    def takeover_running(self) -> bool:
        thread = self._takeover_thread
        return self._handed_over or (thread is not None and thread.is_alive())

    def _start_takeover(self, client: _Client, request: protocol.Request) -> None:
        """Give the connection to a takeover thread: blocking I/O, out of our loop."""
        host = self.takeover_host
        assert host is not None
        self._forget(client)
        sock = client.sock
        sock.setblocking(True)

        def run() -> None:
            try:
                outcome = old_daemon.serve_takeover(
                    sock, request, host, expected_pid=host.expected_replacement()
                )
            except Exception:
                log.exception("control socket: the takeover crashed")
                sock.close()
                host.takeover_failed("the takeover crashed")
                return
            if outcome is old_daemon.Outcome.DONE:
                self._handed_over = True
                host.handed_over(sock)

        self._takeover_thread = threading.Thread(target=run, name="takeover", daemon=True)
        self._takeover_thread.start()

    def _answer_readonly(self, key: RequestKey) -> protocol.Response:
        try:
            if key == RequestKey.INFO:
                version, pid = self.handler.status()
                return protocol.info_ack(version, pid)
            if key == RequestKey.STAT:
                return protocol.data_ack(self.handler.stats_json())
            return protocol.data_ack(self.handler.states_json())
        except Exception:
            log.exception("control socket: %s handler failed", protocol.key_name(key))
            return protocol.response(ResponseKey.FAIL)

    def _state_change(self, key: RequestKey, request: protocol.Request) -> Callable[[], Outcome | Failed]:
        handler = self.handler
        if key == RequestKey.ZREL:
            return handler.reload_zones
        if key == RequestKey.STOP:
            return handler.stop
        if key == RequestKey.REPL:
            return handler.replace
        if key == RequestKey.CHALF:
            return handler.acme_flush
        # REQ_CHAL: the only request with data.
        try:
            challenges = protocol.decode_challenges(request.header.count, request.payload)
        except protocol.ProtocolError as exc:
            message = str(exc)
            log.error("control socket: bad challenge request: %s", message)
            return lambda: Outcome.FAIL
        return lambda: handler.acme_add(challenges)

    def _worker_done(
        self, client: _Client, key: RequestKey, future: Future[Outcome | Failed], reason_limit: int
    ) -> None:
        """Runs on the worker thread: hand the answer to the loop thread.

        ``reason_limit``: the request asked for a failure's reason, up to that many bytes.
        """
        try:
            outcome = future.result()
        except Exception as exc:
            log.exception("control socket: %s handler failed", protocol.key_name(key))
            outcome = Failed(describe(exc))
        if isinstance(outcome, Failed):
            response = protocol.failure(outcome.reason, reason_limit)
        elif isinstance(outcome, Outcome):
            response = protocol.response(ResponseKey(outcome.value))
        else:
            log.error("control socket: %s handler returned %r", protocol.key_name(key), outcome)
            response = protocol.response(ResponseKey.FAIL)
        hold = outcome is Outcome.ACK and key in (RequestKey.STOP, RequestKey.REPL)
        self._done.put((client, response, hold))
        self._wake()

    def _finish_worker_results(self) -> None:
        for _ in range(10_000):
            try:
                client, response, hold = self._done.get_nowait()
            except queue.Empty:
                return
            client.busy = False
            if client.fd not in self._clients or self._clients[client.fd] is not client:
                continue  # the client went away meanwhile
            client.held = hold
            client.last_activity = time.monotonic()
            self._send(client, response)
            self._dispatch_ready(client)

    # --- output and housekeeping -------------------------------------------

    def _send(self, client: _Client, response: protocol.Response) -> None:
        client.outbuf += response.encode()
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        if client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(client)
                return
            del client.outbuf[:sent]
            if sent:
                client.last_activity = time.monotonic()
        self._update_interest(client)

    def _update_interest(self, client: _Client) -> None:
        if client.fd not in self._clients:
            return
        events = 0
        if client.outbuf:
            events |= selectors.EVENT_WRITE
        if not client.busy and not client.held and not client.backlogged:
            events |= selectors.EVENT_READ
        if events == client.events:
            return
        # No interest while the worker has the request (or ever, once held):
        # a client that hangs up meanwhile is noticed when we next write.
        if client.events and events:
            self._selector.modify(client.sock, events, client)
        elif events:
            self._selector.register(client.sock, events, client)
        else:
            self._selector.unregister(client.sock)
        client.events = events

    def _expire_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_timeout
        for client in list(self._clients.values()):
            if not client.busy and not client.held and client.last_activity < cutoff:
                self._drop(client)

    def _forget(self, client: _Client) -> None:
        """Stop serving ``client`` without closing its socket."""
        if self._clients.get(client.fd) is client:
            del self._clients[client.fd]
        if client.events:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
            client.events = 0

    def _drop(self, client: _Client) -> None:
        self._forget(client)
        client.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_r.recv(4096)

    def _shutdown(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        self._selector.close()
        for listener in self.listeners:
            listener.sock.close()
        self._wake_r.close()
        self._wake_w.close()
