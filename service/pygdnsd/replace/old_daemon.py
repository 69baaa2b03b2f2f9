"""The old daemon's half of a replace: answer the takeover conversation, hand over, exit.

The control server hands a REQ_TAK1 connection to ``serve_takeover`` on a
thread of its own; each step asks the daemon (a ``TakeoverSource``) for what
it gives away: the live ACME challenge batches, then the lock, the control
listener and every DNS socket (``HandoffSet``; to a pygdnsd peer also the ``tcp_control``
and ``http_listen`` listeners), then to stop serving and give
its final counters. The answers are gdnsd 3.8.1's to the byte unless the new
daemon marked its REQ_TAK1 as a pygdnsd one (``takeover`` says what that
adds). If the new daemon goes away or stalls before STOP, the old one carries
on (``takeover_failed``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pygdnsd.control import protocol
from pygdnsd.control.protocol import RequestKey, ResponseKey
from pygdnsd.errors import GdnsdError
from pygdnsd.replace import fd_passing, stats_handoff, takeover
from pygdnsd.replace.takeover import DEFAULT_STEP_TIMEOUT, Peer
from pygdnsd.transport.listeners import ListenSocket

log = logging.getLogger(__name__)

_MAX_REQUESTS = 64  # a takeover needs five; more is a confused peer
# gdnsd's new daemon loads its config and every zone between TAK1 and TAK2
# (ours does that before TAK1): give that step as long as a replace may take.
GDNSD_LOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class HandoffSet:
    """What the old daemon gives away at REQ_TAKE."""

    lock_fd: int
    control_fd: int
    dns: Sequence[ListenSocket]
    extra: Mapping[str, Any] = field(default_factory=dict)  # for a pygdnsd peer: {"watchdog_usec": ..., ...}
    tcp_control: Sequence[ListenSocket] = ()
    http: Sequence[ListenSocket] = ()

    def fds(self, peer: Peer) -> list[int]:
        """gdnsd's order: the lock, the control listener, the DNS sockets; then, for a pygdnsd peer only,
        the tcp_control and http_listen listeners (a gdnsd new daemon binds its own tcp_control
        listeners, and has no http_listen)."""
        sockets = [*self.dns, *((*self.tcp_control, *self.http) if peer is Peer.PYGDNSD else ())]
        return [self.lock_fd, self.control_fd, *(listener.sock.fileno() for listener in sockets)]


class TakeoverSource(Protocol):
    """What the old daemon does at each step. Called from the takeover thread."""

    def challenges(self) -> Sequence[protocol.ChallengeBatch]:
        """The live ACME challenges for REQ_TAK2, each batch with its whole seconds left."""
        ...

    def pause_control_accept(self) -> None:
        """Stop accept()ing on the control listener; connections queue in the kernel."""
        ...

    def handoff(self) -> HandoffSet: ...

    def stop_serving(self) -> None:
        """Stop reading DNS sockets, answer what was read, close TCP clients; return when done."""
        ...

    def final_stats(self) -> Mapping[str, Mapping[str, int]]:
        """``Stats.snapshot()`` once nothing serves any more."""
        ...

    def started_wall(self) -> float:
        """When the first daemon of the chain started (Unix seconds): uptime goes on from it."""
        ...

    def takeover_failed(self, reason: str) -> None:
        """Back to normal: resume accepting control connections, answer LATR no more."""
        ...


class Outcome(enum.Enum):
    DONE = "done"  # exit now; leave the connection open (our exit is the new daemon's EOF)
    FAILED = "failed"  # connection closed; takeover_failed was called


def _send(conn: socket.socket, message: protocol.Message) -> None:
    conn.sendall(message.encode())


def _read_request(conn: socket.socket, deadline: float) -> protocol.Request | None:
    reader = protocol.RequestReader()
    for _ in range(protocol.HEADER_SIZE + 1):
        request = reader.next_request()
        if request is not None:
            return request
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        conn.settimeout(remaining)
        # Only what one header needs: the new daemon sends nothing unasked.
        chunk = conn.recv(protocol.HEADER_SIZE - reader.buffered)
        if not chunk:
            return None
        reader.feed(chunk)
    return reader.next_request()


def serve_takeover(
    conn: socket.socket,
    tak1: protocol.Request,
    source: TakeoverSource,
    *,
    expected_pid: int | None = None,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    load_timeout: float = GDNSD_LOAD_TIMEOUT,
) -> Outcome:
    """Run the old daemon's side, from a received REQ_TAK1 to the exit.

    The control server calls this on its own thread with the connection taken
    out of its loop (blocking I/O here). ``expected_pid``: the PID of a
    replacement we spawned ourselves (REQ_REPL): no other may take over.
    A refused TAK1 is answered LATR and returns FAILED without calling
    ``takeover_failed`` (nothing had started). ``load_timeout`` bounds a
    gdnsd new daemon's wait between TAK1 and its next request (its zone load).
    """
    pid = tak1.header.d
    peer = Peer.PYGDNSD if takeover.marked(tak1.header) else Peer.GDNSD
    if tak1.key != RequestKey.TAK1 or pid == 0 or (expected_pid is not None and pid != expected_pid):
        log.warning("control socket: refusing takeover by PID %d", pid)
        with contextlib.suppress(OSError):
            _send(conn, protocol.response(ResponseKey.LATR))
        conn.close()
        return Outcome.FAILED
    log.info("takeover: locked onto replacement PID %d (%s)", pid, peer.value)
    took = False
    reason = "the new daemon went away"
    patience = step_timeout
    try:
        _send(conn, takeover.tak1_ack(peer))
        for number in range(_MAX_REQUESTS):
            patience = load_timeout if number == 0 and peer is Peer.GDNSD else step_timeout
            request = _read_request(conn, time.monotonic() + patience)
            if request is None:
                break
            key = request.key
            if key in (RequestKey.TAK2, RequestKey.TAKE) and request.header.d != pid:
                reason = f"{protocol.key_name(key)} from PID {request.header.d}, not {pid}"
                _send(conn, protocol.response(ResponseKey.FAIL))
                break
            if key == RequestKey.INFO:
                _send(conn, protocol.info_ack(protocol.COMPAT_VERSION, os.getpid()))
            elif key == RequestKey.TAK2:
                batches = list(source.challenges())
                _send(conn, protocol.data_ack(protocol.encode_challenge_handoff(batches), len(batches)))
            elif key == RequestKey.TAKE and not took:
                source.pause_control_accept()
                took = True
                handoff = source.handoff()
                metadata = takeover.encode_extra(dict(handoff.extra)) if peer is Peer.PYGDNSD else b""
                fds = handoff.fds(peer)
                header = protocol.header_with_count(ResponseKey.ACK, len(fds), len(metadata))
                fd_passing.send_with_fds(conn, header.encode() + metadata, fds)
                log.info("takeover: handed %d descriptors to PID %d", len(fds), pid)
            elif key == RequestKey.STOP and took:
                _send(conn, protocol.response(ResponseKey.ACK))
                source.stop_serving()
                slots = stats_handoff.encode(source.final_stats(), int(source.started_wall()))
                with contextlib.suppress(OSError):
                    _send(conn, protocol.stats_handoff(slots))
                log.info("takeover: PID %d took over, exiting", pid)
                return Outcome.DONE
            else:
                reason = f"unexpected {protocol.key_name(key)} during the takeover"
                with contextlib.suppress(OSError):
                    _send(conn, protocol.response(ResponseKey.FAIL))
                break
    except TimeoutError:
        reason = f"the new daemon was silent for {patience:g}s"
    except (OSError, GdnsdError) as exc:
        reason = str(exc)
    log.error("takeover by PID %d failed: %s; carrying on", pid, reason)
    conn.close()
    source.takeover_failed(reason)
    return Outcome.FAILED
