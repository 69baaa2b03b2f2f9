"""One health check of one resource: a coroutine that returns True for success.

Each check is bounded by the service type's timeout (the caller wraps it in
``asyncio.wait_for``; a timeout is a failure). extmon children get no file
descriptors beyond stdin/stdout/stderr on /dev/null (``close_fds``; Python's
own sockets are close-on-exec anyway), so a check never holds a DNS socket,
and a child that outlives its timeout is killed and reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from pygdnsd.monitoring.service_types import Extmon, HttpStatus, TcpConnect

ITEM = "%%ITEM%%"
USER_AGENT = "gdnsd-monitor"
# gdnsd decides on the status line, so a few hundred bytes are plenty.
MAX_STATUS_LINE = 1024


async def tcp_connect(address: str, spec: TcpConnect) -> bool:
    """Connect, then close at once without sending anything."""
    try:
        _, writer = await asyncio.open_connection(address, spec.port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def http_request(address: str, spec: HttpStatus) -> bytes:
    """The request gdnsd sends (seen on the wire from gdnsd 3.8.1)."""
    lines = [f"GET {spec.url_path} HTTP/1.1"]
    if spec.vhost is not None:
        lines.append(f"Host: {spec.vhost}")
    lines += ["Connection: close", f"User-Agent: {USER_AGENT}", "", ""]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


def status_code(status_line: bytes) -> int | None:
    """The code of an ``HTTP/1.x NNN reason`` line, or None."""
    parts = status_line.split(None, 2)
    if (
        len(parts) < 2
        or not parts[0].startswith(b"HTTP/1.")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        return None
    return int(parts[1])


async def http_status(address: str, spec: HttpStatus) -> bool:
    """GET the url_path; success when the status code is one of ok_codes."""
    try:
        reader, writer = await asyncio.open_connection(address, spec.port)
    except OSError:
        return False
    try:
        writer.write(http_request(address, spec))
        await writer.drain()
        line = await reader.readuntil(b"\n")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    code = status_code(line[:MAX_STATUS_LINE])
    return code is not None and code in spec.ok_codes


def extmon_argv(spec: Extmon, item: str) -> list[str]:
    return [arg.replace(ITEM, item) for arg in spec.cmd]


async def extmon(item: str, spec: Extmon, timeout: float) -> bool:
    """Run the command; exit status 0 is success. Killed (with its process group) at the timeout."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *extmon_argv(spec, item),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
    except OSError:
        return False
    try:
        status = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        # Reap it so no zombie is left; SIGKILL makes this quick.
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        return False
    except asyncio.CancelledError:
        # The monitor is stopping (daemon shutdown or hand-off): the command,
        # in a session of its own, would otherwise outlive the daemon.
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError, TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(proc.wait(), 2.0)
        raise
    return status == 0


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
