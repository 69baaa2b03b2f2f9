"""Batched datagram I/O: Linux's recvmmsg/sendmmsg through ctypes.

Python's socket module reads and writes one datagram per system call; under
load a UDP server then spends most of its kernel time entering and leaving
the kernel. ``recvmmsg`` fills many preallocated message headers in one
call and ``sendmmsg`` sends many, as gdnsd does. Both are only ever called
with MSG_DONTWAIT, so they never block: they are loaded through
``ctypes.PyDLL``, which keeps the GIL across the call. Releasing it would
cost more than the call's own Python overhead at one datagram per wake-up,
and would let another thread take the interpreter between a read and its
answers.

A ``DatagramBatch`` is one thread's set of buffers, built once: a receive
slot per message (query bytes, the client's sockaddr, optionally a control
buffer for IP_PKTINFO/IPV6_PKTINFO) and a send area where answers are packed
one after another. A reply reuses the client's sockaddr bytes as its
``msg_name``, so no address is ever converted to or from a string.

Struct layouts come from ctypes declarations of glibc's/musl's Linux
``struct iovec``, ``msghdr`` and ``mmsghdr`` (valid on every 64- and 32-bit
Linux ABI: ``msg_iovlen``/``msg_controllen``/``cmsg_len`` are ``size_t`` in
glibc; musl's ``int`` plus padding has the same offsets on little-endian
64-bit machines). Hot fields are then read and written through memoryviews
at offsets taken from those declarations. FreeBSD would need its own
declarations: ``msg_iovlen`` is ``int``, ``msg_controllen`` and
``cmsg_len`` are ``socklen_t``, ``mmsghdr.msg_len`` is ``ssize_t`` and
sockaddrs start with a length byte; ``load`` returns ``None`` elsewhere
than Linux, and callers fall back to the socket module.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygdnsd.transport.listeners import IP_PKTINFO

MSG_DONTWAIT = socket.MSG_DONTWAIT


class IoVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),  # socklen_t
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint))


class CMsgHdr(ctypes.Structure):
    _fields_ = (("cmsg_len", ctypes.c_size_t), ("cmsg_level", ctypes.c_int), ("cmsg_type", ctypes.c_int))


class SockaddrIn(ctypes.Structure):
    _fields_ = (
        ("sin_family", ctypes.c_uint16),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint8 * 4),
        ("sin_zero", ctypes.c_uint8 * 8),
    )


class SockaddrIn6(ctypes.Structure):
    _fields_ = (
        ("sin6_family", ctypes.c_uint16),
        ("sin6_port", ctypes.c_uint16),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_uint8 * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    )


NAME_SPACE = ctypes.sizeof(SockaddrIn6)
# Offsets used on the per-message path, in units of the memoryview item size.
_HDR_SIZE = ctypes.sizeof(MMsgHdr)
_WORD = ctypes.sizeof(ctypes.c_size_t)
_CMSG_DATA = ctypes.sizeof(CMsgHdr)  # CMSG_ALIGN(sizeof(struct cmsghdr)) on Linux


@dataclass(frozen=True, slots=True)
class MmsgCalls:
    """libc's recvmmsg and sendmmsg, as ctypes functions."""

    recvmmsg: Any
    sendmmsg: Any


def load() -> MmsgCalls | None:
    """libc's batched calls, or ``None`` where they cannot be used (not Linux, no symbol)."""
    if not sys.platform.startswith("linux"):
        return None
    if ctypes.sizeof(ctypes.c_void_p) != _WORD or _HDR_SIZE % ctypes.sizeof(ctypes.c_uint) != 0:
        return None  # the memoryview shortcuts below assume these
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        recvmmsg = libc.recvmmsg
        sendmmsg = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    for call in (recvmmsg, sendmmsg):
        call.restype = ctypes.c_int
    return MmsgCalls(recvmmsg, sendmmsg)


class BatchError(Exception):
    """A batched call failed with ``errno`` (for the caller to count and act on)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, errno.errorcode.get(code, str(code)))
        self.errno = code


# ``Answerer.respond``: (query, client_ip, tcp) -> answer.
Respond = Callable[[bytes, bytes, bool], "bytes | None"]
Failed = Callable[[bytes, BaseException], None]


class DatagramBatch:
    """Preallocated headers and buffers for one thread's batched receive and send.

    ``receive`` fills up to ``size`` receive slots (query bytes, the sender's
    sockaddr and, with ``control_space``, its ancillary data); ``answer``
    runs a responder over them, packs the answers into the send area and
    sends them with as few ``sendmmsg`` calls as fit.
    """

    def __init__(
        self,
        calls: MmsgCalls,
        fd: int,
        family: int,
        size: int,
        max_query: int,
        send_space: int,
        control_space: int = 0,
    ) -> None:
        self._calls = calls
        self.fd = fd
        self.size = size
        self.max_query = max_query
        self.control_space = control_space
        namelen = ctypes.sizeof(SockaddrIn6 if family == socket.AF_INET6 else SockaddrIn)
        addr_field = SockaddrIn6.sin6_addr if family == socket.AF_INET6 else SockaddrIn.sin_addr
        self._ip_at = addr_field.offset
        self._ip_size = addr_field.size
        self._ip_end = addr_field.offset + addr_field.size

        self._queries = bytearray(size * max_query)
        self._names = bytearray(size * NAME_SPACE)
        self._controls = bytearray(max(size * control_space, 1))
        self._sent = bytearray(send_space)
        self._send_controls = bytearray(max(size * control_space, 1))
        # ctypes views pin the bytearrays: they cannot be resized (moved) while these live.
        self._pins = [
            (ctypes.c_char * len(buffer)).from_buffer(buffer)
            for buffer in (self._queries, self._names, self._controls, self._sent, self._send_controls)
        ]
        queries, names, controls, sent, send_controls = (ctypes.addressof(pin) for pin in self._pins)
        recv_iovs = (IoVec * size)()
        send_iovs = (IoVec * size)()
        self._recv = (MMsgHdr * size)()
        self._send = (MMsgHdr * size)()
        self._keep = (recv_iovs, send_iovs)
        for i in range(size):
            recv_iovs[i].iov_base = queries + i * max_query
            recv_iovs[i].iov_len = max_query
            received = self._recv[i].msg_hdr
            received.msg_name = names + i * NAME_SPACE
            # Every datagram of one socket has the same family, so the
            # length the kernel writes back is this one: no reset needed.
            received.msg_namelen = namelen
            received.msg_iov = ctypes.addressof(recv_iovs[i])
            received.msg_iovlen = 1
            reply = self._send[i].msg_hdr
            reply.msg_namelen = namelen
            reply.msg_iov = ctypes.addressof(send_iovs[i])
            reply.msg_iovlen = 1
            if control_space:
                received.msg_control = controls + i * control_space
        self._names_at = names
        self._sent_at = sent
        self._send_controls_at = send_controls

        # Word views over headers and iovecs, for the fields set per message
        # ("P": pointer-sized, which size_t also is on Linux; ``load`` checks).
        words = ctypes.sizeof(ctypes.c_uint)
        self._recv_lens = memoryview(self._recv).cast("B").cast("I")[MMsgHdr.msg_len.offset // words :: _HDR_SIZE // words]
        hdr_words = memoryview(self._recv).cast("B").cast("P")
        self._recv_controllens = hdr_words[MsgHdr.msg_controllen.offset // _WORD :: _HDR_SIZE // _WORD]
        send_words = memoryview(self._send).cast("B").cast("P")
        self._send_names = send_words[MsgHdr.msg_name.offset // _WORD :: _HDR_SIZE // _WORD]
        self._send_controls_ptrs = send_words[MsgHdr.msg_control.offset // _WORD :: _HDR_SIZE // _WORD]
        self._send_controllens = send_words[MsgHdr.msg_controllen.offset // _WORD :: _HDR_SIZE // _WORD]
        iov_words = memoryview(send_iovs).cast("B").cast("P")
        stride = ctypes.sizeof(IoVec) // _WORD
        self._iov_bases = iov_words[IoVec.iov_base.offset // _WORD :: stride]
        self._iov_lens = iov_words[IoVec.iov_len.offset // _WORD :: stride]
        self._query_view = memoryview(self._queries)
        self._recvmmsg = calls.recvmmsg
        self._sendmmsg = calls.sendmmsg

    def receive(self) -> int:
        """Read up to ``size`` queued datagrams without blocking; how many (0: none queued).

        Raises ``BatchError`` for any other failure.
        """
        if self.control_space:
            # The kernel overwrites msg_controllen with what it stored.
            controllens, space = self._recv_controllens, self.control_space
            for i in range(self.size):
                controllens[i] = space
        count: int = self._recvmmsg(self.fd, self._recv, self.size, MSG_DONTWAIT, None)
        if count >= 0:
            return count
        return self._receive_failed()

    def _receive_failed(self) -> int:
        """After a failed read: retry it if a signal interrupted it; 0 if nothing is queued."""
        code = ctypes.get_errno()
        if code == errno.EINTR:
            return self.receive()  # a signal handler ran; the socket module retries too
        if code == errno.EAGAIN or code == errno.EWOULDBLOCK:
            return 0
        raise BatchError(code)

    def answer_one(self, respond: Respond, failed: Failed) -> int:
        """``answer(1, ...)`` for a plain socket (no control data), with less work per call.

        At low query rates every wake-up reads one datagram, and ``answer``'s
        set-up for a batch cost more than the datagram itself: here the one
        reply takes slot 0 at the start of the send area, so only its length
        and address change.
        """
        client_ip = bytes(self._names[self._ip_at : self._ip_end])
        try:
            answer = respond(self._query_view[: self._recv_lens[0]].tobytes(), client_ip, False)
        except Exception as error:
            failed(client_ip, error)
            return 0
        if answer is None:
            return 0
        size = len(answer)
        if size > len(self._sent):
            return 1  # bigger than any datagram: sendto would fail too
        self._sent[:size] = answer
        self._iov_bases[0] = self._sent_at
        self._iov_lens[0] = size
        self._send_names[0] = self._names_at
        sent: int = self._sendmmsg(self.fd, self._send, 1, MSG_DONTWAIT)
        if sent == 1:
            return 0
        if sent < 0 and ctypes.get_errno() == errno.EINTR:
            return self._flush(1)  # retried there, as a batch is
        return 1  # send buffer full, unreachable...: as ``_flush`` counts it

    def answer(self, count: int, respond: Respond, failed: Failed) -> int:
        """Answer the ``count`` datagrams received; how many answers could not be sent.

        ``respond(query, client_ip, False)`` gives the answer (``None``: send nothing);
        if it raises, ``failed(client_ip, error)`` is told and the datagram
        gets no answer. Every datagram is looked at once, in order.
        """
        # Wildcard sockets: each reply must leave from its query's destination address.
        with_control = bool(self.control_space)
        # The per-message path: locals only, no attribute lookups in the loop.
        view = self._query_view
        lens = self._recv_lens
        slot_size = self.max_query
        names = bytes(self._names[: count * NAME_SPACE])
        names_at = self._names_at
        ip_at = self._ip_at
        ip_end = ip_at + self._ip_size
        sent = self._sent
        sent_at = self._sent_at
        space = len(sent)
        bases, lens_out, reply_names = self._iov_bases, self._iov_lens, self._send_names
        pending = used = unsent = 0
        for i in range(count):
            start = i * slot_size
            at = i * NAME_SPACE
            client_ip = names[at + ip_at : at + ip_end]
            try:
                answer = respond(view[start : start + lens[i]].tobytes(), client_ip, False)
            except Exception as error:
                failed(client_ip, error)
                continue
            if answer is None:
                continue
            size = len(answer)
            if used + size > space:
                unsent += self._flush(pending)
                pending = used = 0
                if size > space:
                    unsent += 1  # bigger than any datagram: sendto would fail too
                    continue
            sent[used : used + size] = answer
            bases[pending] = sent_at + used
            lens_out[pending] = size
            reply_names[pending] = names_at + at  # the reply goes where the query came from
            if with_control:
                self._set_reply_control(pending, self._received_control(i))
            used += size
            pending += 1
        if pending:
            unsent += self._flush(pending)
        return unsent

    def _received_control(self, i: int) -> tuple[int, int, bytes] | None:
        """The first control message received with datagram ``i``: (level, type, data)."""
        length = self._recv_controllens[i]
        if length < _CMSG_DATA:
            return None
        at = i * self.control_space
        header = CMsgHdr.from_buffer(self._controls, at)
        end = at + min(header.cmsg_len, length)
        return header.cmsg_level, header.cmsg_type, bytes(self._controls[at + _CMSG_DATA : end])

    def _set_reply_control(self, slot: int, received: tuple[int, int, bytes] | None) -> None:
        reply = reply_pktinfo(*received) if received is not None else None
        if reply is None:
            self._send_controls_ptrs[slot] = 0
            self._send_controllens[slot] = 0
            return
        level, kind, data = reply
        at = slot * self.control_space
        header = CMsgHdr.from_buffer(self._send_controls, at)
        header.cmsg_len = socket.CMSG_LEN(len(data))
        header.cmsg_level = level
        header.cmsg_type = kind
        self._send_controls[at + _CMSG_DATA : at + _CMSG_DATA + len(data)] = data
        self._send_controls_ptrs[slot] = self._send_controls_at + at
        self._send_controllens[slot] = socket.CMSG_SPACE(len(data))

    def _flush(self, pending: int) -> int:
        """Send the first ``pending`` queued answers; how many failed (each once, as sendto would)."""
        sendmmsg = self._sendmmsg
        failed = 0
        done = 0
        while done < pending:
            headers = self._send if done == 0 else ctypes.byref(self._send, done * _HDR_SIZE)
            count: int = sendmmsg(self.fd, headers, pending - done, MSG_DONTWAIT)
            if count > 0:
                done += count
                continue
            if count < 0 and ctypes.get_errno() == errno.EINTR:
                continue
            # This message failed (send buffer full, unreachable...): skip it.
            failed += 1
            done += 1
        return failed


def reply_pktinfo(level: int, kind: int, data: bytes) -> tuple[int, int, bytes] | None:
    """The control message that makes a reply leave from the query's destination address."""
    if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
        # in6_pktinfo {addr, ifindex}: reuse both, so link-local replies work.
        return (level, kind, data[:20])
    if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
        # in_pktinfo {ifindex, spec_dst, addr}: source = the address it came to.
        return (level, kind, b"\x00\x00\x00\x00" + data[8:12] + b"\x00\x00\x00\x00")
    return None
