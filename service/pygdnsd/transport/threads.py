"""Serving threads that stop together: a stop flag and one wake pipe.

Each serving thread waits on its socket(s) and on ``wake_fd``; ``request_stop``
sets ``stopping`` and makes the pipe readable, so every thread notices before
its next read. Sockets are never closed here: a stopped socket keeps what is
queued in it for whoever reads next (a replacing daemon).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

JOIN_SECONDS = 5.0


class ServingThreads:
    """The threads of one transport (``kind`` names it in log lines)."""

    def __init__(self, kind: str, join_seconds: float = JOIN_SECONDS) -> None:
        self.kind = kind
        self.join_seconds = join_seconds
        self.stopping = False
        self.wake_fd, self._wake_w = os.pipe()
        self._threads: list[threading.Thread] = []

    def spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def request_stop(self) -> None:
        """Ask every thread to stop, without waiting (see ``stop``)."""
        if self._wake_w < 0:
            return
        self.stopping = True
        os.write(self._wake_w, b"!")

    def stop(self) -> None:
        """Stop every thread; returns once none will read again (or after ``join_seconds`` each)."""
        if self._wake_w < 0:
            return  # stopped already
        self.request_stop()
        for thread in self._threads:
            thread.join(self.join_seconds)
            if thread.is_alive():
                log.error("%s thread %s did not stop within %s s", self.kind, thread.name, self.join_seconds)
        self._threads.clear()
        os.close(self.wake_fd)
        os.close(self._wake_w)
        self._wake_w = -1
