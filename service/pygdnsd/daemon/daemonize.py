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
import select
import sys
import time
from dataclasses import dataclass

READY = b"OK\n"
MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the daemon reported to the foreground process (``pid``: the daemon's, when it said)."""

    ok: bool
    message: str
    pid: int | None = None


class StartupReport:
    """The daemon's end of the pipe; each method may be called once, later calls do nothing."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def ready(self, pid: int | None = None) -> None:
        self._send(READY if pid is None else b"OK %d\n" % pid)

    @property
    def pending(self) -> bool:
        return self.fd is not None

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


def parse_verdict(data: bytes) -> Verdict:
    if data == READY:
        return Verdict(True, "")
    if data.startswith(b"OK ") and data.endswith(b"\n") and data[3:-1].isdigit():
        return Verdict(True, "", int(data[3:-1]))
    if not data:
        return Verdict(False, "the daemon exited during startup without saying why (see its log)")
    return Verdict(False, data.decode("utf-8", "replace").strip())


def read_verdict(fd: int, timeout: float | None = None) -> Verdict:
    """Read the daemon's report until the pipe closes (bounded by MAX_MESSAGE and ``timeout``).

    On timeout the pipe is closed all the same: a replacing daemon that sees
    it close before it took over gives up by itself.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    data = b""
    try:
        while len(data) <= MAX_MESSAGE:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                    return Verdict(False, f"no verdict from the new daemon within {timeout:g}s; giving up")
            try:
                chunk = os.read(fd, 4096)
            except InterruptedError:
                continue
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return parse_verdict(data)


def reader_gone(fd: int) -> bool:
    """Whether the foreground end of a report pipe has closed (POLLERR on our write end)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, events in poller.poll(0))


def _stdio_to_devnull(keep_stderr: bool) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def detach(timeout: float | None = None, keep_stderr: bool = False) -> tuple[Verdict | None, StartupReport]:
    """Fork off the daemon (the foreground waits at most ``timeout`` seconds for its word).

    Returns ``(verdict, _)`` in the foreground process once the daemon has
    reported (the caller exits), and ``(None, report)`` in the daemon.
    ``keep_stderr``: the daemon keeps our stderr (its log, when no log daemon
    listens: see ``log.keeps_lines``) instead of /dev/null.
    """
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        verdict = read_verdict(read_end, timeout)
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
        _stdio_to_devnull(keep_stderr)
    except BaseException:
        os._exit(1)
    return None, StartupReport(write_end)
