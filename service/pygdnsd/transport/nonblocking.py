"""One read from a non-blocking stream socket, as the control and status listeners make it."""

from __future__ import annotations

import socket


def received(sock: socket.socket, size: int) -> bytes | None:
    """Up to ``size`` bytes; None when nothing has come yet; b"" when the peer closed or the socket failed.

    Both end the connection the same way: the listeners that read this way drop
    the client either way, and count neither apart.
    """
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
