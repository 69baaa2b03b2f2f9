"""Sending raw DNS packets to a loopback server over UDP or TCP, with bounded waits."""

from __future__ import annotations

import socket
import struct

# How long to wait for an answer that may legitimately never come (dropped
# queries): short, since both servers answer loopback queries in microseconds.
SILENCE_TIMEOUT = 0.5
ANSWER_TIMEOUT = 3.0


def ask_udp(address: tuple[str, int], packet: bytes, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
    """The datagram answering ``packet``, or None if none came within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.send(packet)
        try:
            return sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_message(sock: socket.socket) -> bytes | None:
    """The next length-framed message on a TCP connection, or None if the server
    closed or reset it (or stayed silent for the socket's timeout) first."""
    try:
        head = _recv_exact(sock, 2)
        if head is None:
            return None
        return _recv_exact(sock, struct.unpack("!H", head)[0])
    except (TimeoutError, ConnectionResetError):
        return None


def ask_tcp(address: tuple[str, int], packet: bytes, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
    """The message answering ``packet`` over a fresh TCP connection, or None if the
    server closed the connection (or stayed silent for ``timeout``) without one."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        return read_message(sock)


def ask(address: tuple[str, int], packet: bytes, tcp: bool, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
    return ask_tcp(address, packet, timeout) if tcp else ask_udp(address, packet, timeout)
