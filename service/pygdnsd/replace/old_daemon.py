"""The old daemon's half of a replace: answer the takeover conversation, hand over, exit.

The control server hands a REQ_TAK1 connection to ``serve_takeover`` on a
thread of its own; each step asks the daemon (a ``TakeoverSource``) for what
it gives away: the live ACME challenges, then the lock, the control listener,
every DNS socket and every ``tcp_control`` and ``http_listen`` listener (``HandoffSet``), then to stop serving and give its final
counters. If the new daemon goes away or stalls before STOP, the old one
carries on (``takeover_failed``).
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
from pygdnsd.replace import fd_passing
from pygdnsd.replace.fd_passing import FdDescription, FdRole
from pygdnsd.replace.takeover import DEFAULT_STEP_TIMEOUT, counters_from_snapshot
from pygdnsd.transport.listeners import ListenSocket

log = logging.getLogger(__name__)

_MAX_REQUESTS = 64  # a takeover needs five; more is a confused peer


@dataclass(frozen=True)
class HandoffSet:
    """What the old daemon gives away at REQ_TAKE."""

    lock_fd: int
    control_fd: int
    dns: Sequence[ListenSocket]
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"started": ..., "watchdog_usec": ...}
    tcp_control: Sequence[ListenSocket] = ()
    http: Sequence[ListenSocket] = ()

    def descriptions(self) -> list[FdDescription]:
        return [
            FdDescription(FdRole.LOCK),
            FdDescription(FdRole.CONTROL),
            *(FdDescription(FdRole.DNS, listener.spec) for listener in self.dns),
            *(FdDescription(FdRole.TCP_CONTROL, listener.spec) for listener in self.tcp_control),
            *(FdDescription(FdRole.HTTP, listener.spec) for listener in self.http),
        ]

    def fds(self) -> list[int]:
        return [
            self.lock_fd,
            self.control_fd,
            *(listener.sock.fileno() for listener in [*self.dns, *self.tcp_control, *self.http]),
        ]


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
) -> Outcome:
    """Run the old daemon's side, from a received REQ_TAK1 to the exit.

    The control server calls this on its own thread with the connection taken
    out of its loop (blocking I/O here). ``expected_pid``: the PID of a
    replacement we spawned ourselves (REQ_REPL): no other may take over.
    A refused TAK1 is answered LATR and returns FAILED without calling
    ``takeover_failed`` (nothing had started).
    """
    pid = tak1.header.d
    if tak1.key != RequestKey.TAK1 or pid == 0 or (expected_pid is not None and pid != expected_pid):
        log.warning("control socket: refusing takeover by PID %d", pid)
        with contextlib.suppress(OSError):
            _send(conn, protocol.response(ResponseKey.LATR))
        conn.close()
        return Outcome.FAILED
    log.info("takeover: locked onto replacement PID %d", pid)
    took = False
    reason = "the new daemon went away"
    try:
        _send(conn, protocol.response(ResponseKey.ACK))
        for _ in range(_MAX_REQUESTS):
            request = _read_request(conn, time.monotonic() + step_timeout)
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
                metadata = fd_passing.encode_descriptions(handoff.descriptions(), dict(handoff.extra))
                fds = handoff.fds()
                header = protocol.header_with_count(ResponseKey.ACK, len(fds), len(metadata))
                fd_passing.send_with_fds(conn, header.encode() + metadata, fds)
                log.info("takeover: handed %d descriptors to PID %d", len(fds), pid)
            elif key == RequestKey.STOP and took:
                _send(conn, protocol.response(ResponseKey.ACK))
                source.stop_serving()
                counters = counters_from_snapshot(source.final_stats())
                with contextlib.suppress(OSError):
                    _send(conn, protocol.stats_handoff(counters))
                log.info("takeover: PID %d took over, exiting", pid)
                return Outcome.DONE
            else:
                reason = f"unexpected {protocol.key_name(key)} during the takeover"
                with contextlib.suppress(OSError):
                    _send(conn, protocol.response(ResponseKey.FAIL))
                break
    except TimeoutError:
        reason = f"the new daemon was silent for {step_timeout:g}s"
    except (OSError, GdnsdError) as exc:
        reason = str(exc)
    log.error("takeover by PID %d failed: %s; carrying on", pid, reason)
    conn.close()
    source.takeover_failed(reason)
    return Outcome.FAILED
