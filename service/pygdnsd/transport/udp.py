"""UDP serving: one thread per UDP listening socket.

Each thread polls its socket together with the shared wake pipe
(``ServingThreads``), then drains the socket with non-blocking reads,
checking the stop flag before every read: every datagram read is answered,
and datagrams still queued in a socket at a stop stay there for whoever
reads it next (a replacing daemon, or nobody at exit).

On Linux a read takes up to ``BATCH`` datagrams at once and their answers
leave together (recvmmsg/sendmmsg), which divides the per-query system-call
cost by the batch size; a batch that comes back short means the socket was
drained, so the thread polls again without a read that would only say
EAGAIN. The batches are the compiled fast path's (``fastpath``), which also
answers questions whose answers the engine has prepared, without a Python
call per query; else ``mmsg``'s through ctypes, every query answered by the
Python responder. Where neither can be used the socket module's
one-datagram-per-call path serves. All count ``reqs``, ``recvfail`` and
``sendfail`` the same way.
"""

from __future__ import annotations

import functools
import logging
import select
import socket
from collections.abc import Sequence
from types import ModuleType

from pygdnsd.engine.stats import Stats
from pygdnsd.transport import fastpath, mmsg
from pygdnsd.transport.answerer import Answerer
from pygdnsd.transport.listeners import ListenSocket
from pygdnsd.transport.mmsg import reply_pktinfo
from pygdnsd.transport.threads import ServingThreads

log = logging.getLogger(__name__)

# DNS queries are small; a bigger query is truncated and answered FORMERR.
MAX_QUERY = 4096
# Room for one in_pktinfo or in6_pktinfo control message.
PKTINFO_SPACE = socket.CMSG_SPACE(20)
# Datagrams per recvmmsg. Past a few dozen the system-call cost is already
# negligible next to answering; a bigger batch only delays the first answer.
BATCH = 32
# Where a batch's answers are packed: room for any UDP payload, so one
# answer always fits once the area is flushed.
SEND_SPACE = 65536


def packed_ip(family: int, host: str) -> bytes:
    """The packed client address; a v6 link-local host may carry a ``%scope`` suffix."""
    try:
        return socket.inet_pton(family, host)
    except OSError:
        return socket.inet_pton(family, host.partition("%")[0])


def log_failure(family: int, client_ip: bytes, error: BaseException) -> None:
    log.error("error answering a UDP query from %s", socket.inet_ntop(family, client_ip), exc_info=error)


class UdpServer:
    """Serves every UDP listening socket it is given, one thread each."""

    def __init__(
        self,
        listeners: Sequence[ListenSocket],
        responder: Answerer,
        stats: Stats,
        *,
        batched: bool = True,
        compiled: bool | None = None,
    ) -> None:
        self.listeners = tuple(listeners)
        self.responder = responder
        self.stats = stats
        self.threads = ServingThreads("UDP")
        # ``batched=False`` forces the portable path, ``compiled=False`` the
        # ctypes batches (tests, comparisons); ``compiled=None``: the
        # process's choice (``fastpath.chosen``).
        self.mmsg_calls = mmsg.load() if batched else None
        self.compiled: ModuleType | None = None
        if batched and compiled is not False:
            self.compiled = fastpath.chosen().module if compiled is None else fastpath.choose({}).module
            if compiled and self.compiled is None:
                raise RuntimeError("the compiled UDP fast path is not built")

    def start(self) -> None:
        for listener in self.listeners:
            self.threads.spawn(
                functools.partial(self._serve, listener), f"udp {listener.spec.label}#{listener.spec.index}"
            )

    def request_stop(self) -> None:
        """Ask every thread to stop, without waiting (see ``stop``)."""
        self.threads.request_stop()

    def stop(self) -> None:
        """Stop reading every socket; returns once no thread will read again."""
        self.threads.stop()

    def _serve(self, listener: ListenSocket) -> None:
        sock = listener.sock
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        threads = self.threads
        poller.register(threads.wake_fd, select.POLLIN)
        control_space = PKTINFO_SPACE if listener.spec.wildcard else 0
        failed = functools.partial(log_failure, sock.family)
        if self.compiled is not None:
            prepared = getattr(self.responder, "udp_fast_path", None)
            fast = prepared(self.compiled) if prepared is not None else None
            compiled = self.compiled.Batch(
                sock.fileno(), sock.family, BATCH, MAX_QUERY, SEND_SPACE, control_space, fast
            )
            # ``_serve_batches`` in C: no Python per wake-up, which at low
            # query rates is per query.
            compiled.serve(threads.wake_fd, threads, self.responder.respond, failed, self.stats.udp.values)
            return
        if self.mmsg_calls is not None:
            batch = mmsg.DatagramBatch(
                self.mmsg_calls, sock.fileno(), sock.family, BATCH, MAX_QUERY, SEND_SPACE, control_space
            )
            self._serve_batches(poller, batch, failed)
            return
        while not threads.stopping:
            poller.poll()
            self._drain(sock, control_space)

    def _serve_batches(self, poller: select.poll, batch: mmsg.DatagramBatch, failed: mmsg.Failed) -> None:
        """Poll, then drain the socket in batches, until stopped.

        One loop with everything bound once: at low query rates each wake-up
        reads a single datagram, and per-wake-up set-up was a good part of
        the cost of answering it.
        """
        threads = self.threads
        poll = poller.poll
        receive = batch.receive
        answer = batch.answer
        # Control data (wildcard sockets) takes ``answer``'s general path.
        answer_one = batch.answer_one if not batch.control_space else None
        respond = self.responder.respond
        counts = self.stats.udp.values
        size = batch.size
        while not threads.stopping:
            poll()
            while not threads.stopping:
                try:
                    count = receive()
                except mmsg.BatchError:
                    counts["recvfail"] += 1
                    break
                if not count:
                    break
                counts["reqs"] += count
                if count == 1 and answer_one is not None:
                    unsent = answer_one(respond, failed)
                else:
                    unsent = answer(count, respond, failed)
                if unsent:
                    counts["sendfail"] += unsent
                if count < size:
                    break  # drained: whatever arrived since wakes the next poll

    def _drain(self, sock: socket.socket, control_space: int) -> None:
        """Answer every datagram queued in ``sock``, one system call each way.

        ``control_space`` is ``PKTINFO_SPACE`` on a wildcard socket: each
        query's destination address comes with it, and its answer is sent
        from that address (recvmsg/sendmsg); 0 elsewhere, where the cheaper
        recvfrom/sendto serve (recvmsg/sendmsg cost about 2,700 more CPU
        instructions per query, measured).
        """
        threads = self.threads
        # The per-packet path: locals only, no method lookups in the loop.
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        recvmsg = sock.recvmsg
        sendmsg = sock.sendmsg
        respond = self.responder.respond
        counts = self.stats.udp.values
        family = sock.family
        pton = socket.inet_pton
        ancillary: list[tuple[int, int, bytes]] = []
        while not threads.stopping:
            try:
                if control_space:
                    query, ancillary, _flags, addr = recvmsg(MAX_QUERY, control_space)
                else:
                    query, addr = recvfrom(MAX_QUERY)
            except BlockingIOError:
                return
            except OSError:
                counts["recvfail"] += 1
                return
            counts["reqs"] += 1
            try:
                try:
                    client_ip = pton(family, addr[0])
                except OSError:
                    client_ip = packed_ip(family, addr[0])
                answer = respond(query, client_ip, False)
            except Exception:
                log.exception("error answering a UDP query from %s", addr[0])
                continue
            if answer is None:
                continue
            try:
                if control_space:
                    control = []
                    for level, kind, data in ancillary:
                        message = reply_pktinfo(level, kind, data)
                        if message is not None:
                            control.append(message)
                    sendmsg([answer], control, 0, addr)
                else:
                    sendto(answer, addr)
            except OSError:
                counts["sendfail"] += 1
