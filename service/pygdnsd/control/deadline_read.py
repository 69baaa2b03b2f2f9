"""Reading exactly ``size`` bytes from a stream socket before a deadline.

The control client, the new daemon's end of a takeover and descriptor
passing all read fixed-size messages with a time limit, and each words a
failure its own way (gdnsdctl's wording, the takeover step, how many bytes
came with descriptors). So the loop is here once, a short read comes out as
``ReadStopped`` saying what happened, and each caller words it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

# Larger messages are read in pieces of this size, not into one buffer of their full size.
MAX_CHUNK = 1 << 20

# One read of at most n bytes on the socket (whose timeout is set): b"" at EOF.
Receive = Callable[[int], bytes]


class ReadStopped(Exception):
    """The read ended after ``received`` bytes: the deadline passed (``timed_out``) or the peer closed."""

    def __init__(self, received: int, timed_out: bool) -> None:
        super().__init__("timed out" if timed_out else "connection closed")
        self.received = received
        self.timed_out = timed_out


def read_exactly(
    sock: socket.socket, size: int, deadline: float, receive: Receive | None = None
) -> bytes:
    """``size`` bytes from ``sock`` by ``deadline`` (``time.monotonic``), never more.

    ``receive`` replaces ``sock.recv`` for one read (e.g. recvmsg with
    descriptors). Other socket errors (OSError) pass through.
    """
    read = sock.recv if receive is None else receive
    data = bytearray()
    # Bounded: every round reads at least one byte or raises.
    for _ in range(size + 1):
        if len(data) >= size:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadStopped(len(data), timed_out=True)
        sock.settimeout(remaining)
        try:
            chunk = read(min(size - len(data), MAX_CHUNK))
        except TimeoutError as exc:
            raise ReadStopped(len(data), timed_out=True) from exc
        if not chunk:
            raise ReadStopped(len(data), timed_out=False)
        data += chunk
    return bytes(data)
