"""What runs in a worker process (``transport.workers`` forks it): serve one share.

After the fork the worker keeps only what it serves: its share's listening
sockets and its pipe to the instance (plus stdio and the log daemons'
sockets). It starts its own UDP and TCP threads (threads do not survive a
fork), then follows the instance over the pipe: monitored states to adopt,
live ACME challenges to serve (acknowledged once served), requests for its
counters, the order to stop. It stops as the instance
does (stop reading, answer what TCP clients sent), on that order, on
SIGTERM/SIGINT, when the pipe reaches EOF, or when the instance dies
(PR_SET_PDEATHSIG), and its last message carries its final counts.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import FrameType

from pygdnsd.engine.stats import Stats
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.sttl import Sttl
from pygdnsd.transport.answerer import ChallengeAnswerer
from pygdnsd.transport.listeners import ListenSocket
from pygdnsd.transport.tcp import TcpLimits, TcpServer
from pygdnsd.transport.udp import UdpServer

log = logging.getLogger("gdnsd")

# Messages over a worker's pipe (pickled tuples, the kind first).
STATES = "states"  # instance -> worker: {name: (down, ttl, forced)}
CHALLENGES = "challenges"  # instance -> worker: a ChallengeSet; worker -> instance: served from now on
STATS = "stats"  # instance -> worker: a request; worker -> instance: the counts
STOP = "stop"  # instance -> worker
FINAL = "final"  # worker -> instance: the counts, as it exits
READY = "ready"  # worker -> instance: its threads read its sockets now

PR_SET_PDEATHSIG = 1

Counts = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Share:
    """The listening sockets one process serves."""

    number: int  # 0: the instance itself; k: worker k
    udp: tuple[ListenSocket, ...] = ()
    tcp: tuple[tuple[ListenSocket, TcpLimits], ...] = ()

    @property
    def descriptors(self) -> set[int]:
        return {s.sock.fileno() for s in self.udp} | {s.sock.fileno() for s, _ in self.tcp}


def split(
    udp: Sequence[ListenSocket], tcp: Sequence[tuple[ListenSocket, TcpLimits]], processes: int
) -> list[Share]:
    """Share k of ``processes`` holds the sockets of index k; share 0 also any index beyond."""

    def number(listener: ListenSocket) -> int:
        index = listener.spec.index
        return index if 0 <= index < processes else 0

    return [
        Share(
            k,
            tuple(s for s in udp if number(s) == k),
            tuple((s, limits) for s, limits in tcp if number(s) == k),
        )
        for k in range(max(processes, 1))
    ]


def states_message(states: Mapping[str, Sttl]) -> tuple[str, dict[str, tuple[bool, int, bool]]]:
    return STATES, {name: (s.down, s.ttl, s.forced) for name, s in states.items()}


def states_from(payload: Mapping[str, tuple[bool, int, bool]]) -> dict[str, Sttl]:
    return {name: Sttl(down, ttl, forced) for name, (down, ttl, forced) in payload.items()}


class _StopRequested(Exception):
    """SIGTERM/SIGINT in a worker."""


def _on_stop_signal(_signum: int, _frame: FrameType | None) -> None:
    raise _StopRequested


def die_with(parent: int) -> None:
    """SIGTERM when the forking thread's process dies (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def _open_descriptors() -> list[int]:
    for listing in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return [int(name) for name in os.listdir(listing)]
    found = []
    for fd in range(min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536)):
        with contextlib.suppress(OSError):
            os.fstat(fd)
            found.append(fd)
    return found


def _is_log_socket(fd: int) -> bool:
    """A Unix datagram socket: syslog(3)'s or journald's, held inside libc/libsystemd."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        probe = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        return probe.family == socket.AF_UNIX and probe.type == socket.SOCK_DGRAM
    finally:
        probe.detach()


def _blank_all_but(keep: set[int]) -> None:
    """Close every descriptor inherited from the instance but ``keep``, stdio and log sockets.

    Some are held open for what their closing tells another process: the
    startup report pipe (the ``gdnsd replace`` helper waits for its EOF),
    control connections, the lock and the pidfile. A worker keeping them
    would make the instance look alive after it exited. Their numbers stay
    taken (by /dev/null): objects inherited from the instance own them and
    may close them when collected, which must not close one the worker uses.
    """
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in _open_descriptors():
            if fd <= 2 or fd == null or fd in keep or _is_log_socket(fd):
                continue
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
    finally:
        os.close(null)


def serve_share(
    share: Share, responder: ChallengeAnswerer, stats: Stats, monitor: Monitor | None, conn: Connection
) -> None:
    """A worker's life after fork: serve ``share`` until told to stop or orphaned."""
    stats.reset()  # the fork copied the instance's counts
    servers: list[UdpServer | TcpServer] = [
        UdpServer(share.udp, responder, stats),
        TcpServer(list(share.tcp), responder, stats),
    ]
    for server in servers:
        server.start()
    conn.send((READY,))
    why = "told to stop"
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                why = "the instance is gone"
                break
            kind = message[0]
            if kind == STATES and monitor is not None:
                monitor.adopt(states_from(message[1]))
            elif kind == CHALLENGES:
                responder.set_challenges(message[1])
                conn.send((CHALLENGES,))
            elif kind == STATS:
                conn.send((STATS, stats.snapshot()))
            elif kind == STOP:
                break
    except _StopRequested:
        why = "stop signal"
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        for server in servers:
            server.request_stop()
        for server in servers:
            server.stop()
    log.info("worker %d (PID %d): stopped (%s)", share.number, os.getpid(), why)
    with contextlib.suppress(OSError):
        conn.send((FINAL, stats.snapshot()))


def become_worker(
    share: Share, responder: ChallengeAnswerer, stats: Stats, monitor: Monitor | None, pipe: socket.socket, parent: int
) -> int:
    """The worker's whole life, right after fork; its exit status."""
    die_with(parent)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_stop_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the instance's
    _blank_all_but(share.descriptors | {pipe.fileno()})
    serve_share(share, responder, stats, monitor, Connection(pipe.detach()))
    return 0
