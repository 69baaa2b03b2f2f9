"""``gdnsd daemonize``: detach from the terminal, and tell the foreground how startup went.

The foreground process forks, the child calls setsid and forks again (so the
daemon is no session leader and can never regain a terminal), and the
grandchild carries on as the daemon with stdio on /dev/null. A pipe links the
daemon back to the waiting foreground process: the daemon writes ``OK`` once
it serves, or the reason it failed; the foreground process prints the reason
on stderr and exits non-zero, or exits 0. A pipe that closes without a word
means the daemon died during startup.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

READY = b"OK\n"
MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the daemon reported to the foreground process."""

    ok: bool
    message: str


class StartupReport:
    """The daemon's end of the pipe; each method may be called once, later calls do nothing."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def ready(self) -> None:
        self._send(READY)

    def failed(self, reason: str) -> None:
        self._send(reason.encode("utf-8", "replace")[:MAX_MESSAGE] or b"startup failed")

    def _send(self, data: bytes) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, data)
        except OSError:
            pass  # the foreground process is gone: nobody to tell
        finally:
            os.close(fd)


def read_verdict(fd: int) -> Verdict:
    """Read the daemon's report until the pipe closes (bounded by MAX_MESSAGE)."""
    data = b""
    while len(data) <= MAX_MESSAGE:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    os.close(fd)
    if data == READY:
        return Verdict(True, "")
    if not data:
        return Verdict(False, "the daemon exited during startup without saying why (see syslog)")
    return Verdict(False, data.decode("utf-8", "replace").strip())


def _stdio_to_devnull() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def detach() -> tuple[Verdict | None, StartupReport]:
    """Fork off the daemon.

    Returns ``(verdict, _)`` in the foreground process once the daemon has
    reported (the caller exits), and ``(None, report)`` in the daemon.
    """
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        verdict = read_verdict(read_end)
        # The intermediate child exits at once; reap it so it is no zombie.
        os.waitpid(first, 0)
        return verdict, StartupReport(None)
    os.close(read_end)
    try:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        os.umask(0o022)
        _stdio_to_devnull()
    except BaseException:
        os._exit(1)
    return None, StartupReport(write_end)
