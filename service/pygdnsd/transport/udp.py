"""UDP serving: one thread per UDP listening socket.

Each thread polls its socket together with the shared wake pipe
(``ServingThreads``), then drains the socket with non-blocking reads until
EAGAIN, checking the stop flag before every read: datagrams still queued in a
socket at a stop stay there for whoever reads it next (a replacing daemon, or
nobody at exit).
"""

from __future__ import annotations

import functools
import logging
import select
import socket
from collections.abc import Sequence

from pygdnsd.engine.stats import Stats
from pygdnsd.transport.answerer import Answerer
from pygdnsd.transport.listeners import IP_PKTINFO, ListenSocket
from pygdnsd.transport.threads import ServingThreads

log = logging.getLogger(__name__)

# DNS queries are small; a bigger query is truncated and answered FORMERR.
MAX_QUERY = 4096
# Room for one in_pktinfo or in6_pktinfo control message.
PKTINFO_SPACE = socket.CMSG_SPACE(20)


def packed_ip(family: int, host: str) -> bytes:
    """The packed client address; a v6 link-local host may carry a ``%scope`` suffix."""
    try:
        return socket.inet_pton(family, host)
    except OSError:
        return socket.inet_pton(family, host.partition("%")[0])


def reply_pktinfo(level: int, kind: int, data: bytes) -> tuple[int, int, bytes] | None:
    """The control message that makes a reply leave from the query's destination address."""
    if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
        # in6_pktinfo {addr, ifindex}: reuse both, so link-local replies work.
        return (level, kind, data[:20])
    if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
        # in_pktinfo {ifindex, spec_dst, addr}: source = the address it came to.
        return (level, kind, b"\x00\x00\x00\x00" + data[8:12] + b"\x00\x00\x00\x00")
    return None


class UdpServer:
    """Serves every UDP listening socket it is given, one thread each."""

    def __init__(self, listeners: Sequence[ListenSocket], responder: Answerer, stats: Stats) -> None:
        self.listeners = tuple(listeners)
        self.responder = responder
        self.stats = stats
        self.threads = ServingThreads("UDP")

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
        drain = self._drain_pktinfo if listener.spec.wildcard else self._drain
        while not threads.stopping:
            poller.poll()
            drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        threads = self.threads
        # The per-packet path: locals only, no method lookups in the loop.
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        respond = self.responder.respond
        counts = self.stats.udp.values
        family = sock.family
        pton = socket.inet_pton
        while not threads.stopping:
            try:
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
            if answer is not None:
                try:
                    sendto(answer, addr)
                except OSError:
                    counts["sendfail"] += 1

    def _drain_pktinfo(self, sock: socket.socket) -> None:
        threads = self.threads
        recvmsg = sock.recvmsg
        sendmsg = sock.sendmsg
        respond = self.responder.respond
        counts = self.stats.udp.values
        family = sock.family
        while not threads.stopping:
            try:
                query, ancillary, _flags, addr = recvmsg(MAX_QUERY, PKTINFO_SPACE)
            except BlockingIOError:
                return
            except OSError:
                counts["recvfail"] += 1
                return
            counts["reqs"] += 1
            try:
                answer = respond(query, packed_ip(family, addr[0]), False)
            except Exception:
                log.exception("error answering a UDP query from %s", addr[0])
                continue
            if answer is None:
                continue
            control = []
            for level, kind, data in ancillary:
                message = reply_pktinfo(level, kind, data)
                if message is not None:
                    control.append(message)
            try:
                sendmsg([answer], control, 0, addr)
            except OSError:
                counts["sendfail"] += 1
