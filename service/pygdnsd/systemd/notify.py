"""sd_notify(3): telling systemd what the daemon is doing.

Whether we run under systemd is a runtime question: ``$NOTIFY_SOCKET`` is set
(Type=notify units get it; NotifyAccess=all hands it to ExecReload too, which
is how a replacement instance started by ``gdnsd replace`` can reach PID 1).
Without it every function here is a no-op returning False.

Backends, in order: systemd-python's ``systemd.daemon.notify`` (wraps
libsystemd's sd_pid_notify_with_fds, so it can pass descriptors), then
cysystemd's ``sd_notify`` (wraps plain sd_notify: it cannot pass descriptors,
so BARRIER=1 cannot go through it), then a small stdlib sender speaking the
protocol itself: one AF_UNIX datagram to the path in ``$NOTIFY_SOCKET``
('@' meaning the abstract namespace), descriptors as SCM_RIGHTS. Messages
that carry descriptors always use a backend that can pass them.

The replace hand-off (handoff-facts.md): the new instance claims the unit
with ``ready_as_main(os.getpid())`` -- MAINPID and READY=1 in ONE datagram, so
systemd never sees a main PID that is not yet serving -- then waits on a
barrier so PID 1 has certainly processed it before the old instance exits.
The old instance must never send STOPPING=1 while handing over (systemd would
stop the whole unit), so ``stopping`` exists only for a real stop.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from pygdnsd.errors import GdnsdError

NOTIFY_SOCKET = "NOTIFY_SOCKET"
DEFAULT_BARRIER_TIMEOUT = 5.0

# A sender: (message, fds) -> sent. Raises NotifyError on failure.
Sender = Callable[[str, Sequence[int]], bool]


class NotifyError(GdnsdError):
    """A notification could not be delivered or confirmed; the message says which."""


def notify_socket(environ: Mapping[str, str] | None = None) -> str | None:
    """The notification socket address systemd gave us, or None."""
    value = (os.environ if environ is None else environ).get(NOTIFY_SOCKET, "")
    return value or None


def under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    return notify_socket(environ) is not None


def _unix_address(address: str) -> str | bytes:
    if address.startswith("@"):
        # Abstract namespace: a leading NUL, and no trailing NUL.
        return b"\0" + address[1:].encode("utf-8", "surrogateescape")
    if not address.startswith("/"):
        # systemd 252 also allows vsock:CID:PORT; we are never given one by a unit.
        raise NotifyError(f"${NOTIFY_SOCKET}={address!r} is not a unix socket path")
    return address


def stdlib_send(message: str, fds: Sequence[int] = ()) -> bool:
    """The protocol itself: one datagram, descriptors in one SCM_RIGHTS message."""
    address = notify_socket()
    if address is None:
        return False
    data = message.encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(_unix_address(address))
            if fds:
                sent = socket.send_fds(sock, [data], list(fds))
            else:
                sent = sock.send(data)
    except OSError as exc:
        raise NotifyError(f"sd_notify to {address}: {exc.strerror or exc}") from exc
    if sent != len(data):
        raise NotifyError(f"sd_notify to {address}: datagram truncated ({sent} of {len(data)})")
    return True


def _systemd_python_sender() -> Sender | None:
    try:
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    library_notify = daemon.notify

    def send(message: str, fds: Sequence[int] = ()) -> bool:
        if notify_socket() is None:
            return False
        try:
            # Returns False without $NOTIFY_SOCKET. Debian's python3-systemd 235
            # raises TypeError on its own documented default fds=None, so leave
            # the argument out when there is nothing to pass.
            if fds:
                sent = library_notify(message, fds=list(fds))
            else:
                sent = library_notify(message)
        except OSError as exc:
            raise NotifyError(f"sd_notify: {exc.strerror or exc}") from exc
        return bool(sent)

    return send


def _cysystemd_sender() -> Sender | None:
    try:
        daemon = importlib.import_module("cysystemd.daemon")
    except ImportError:
        return None
    library_notify = getattr(daemon, "sd_notify", None)
    if library_notify is None:
        return None

    def send(message: str, fds: Sequence[int] = ()) -> bool:
        if fds:
            # cysystemd only wraps sd_notify(), which has no way to pass descriptors.
            return stdlib_send(message, fds)
        if notify_socket() is None:
            return False
        try:
            library_notify(message)
        except (OSError, ValueError, RuntimeError) as exc:
            raise NotifyError(f"sd_notify (cysystemd): {exc}") from exc
        return True

    return send


def _pick_sender() -> tuple[str, Sender]:
    for name, factory in (("systemd-python", _systemd_python_sender), ("cysystemd", _cysystemd_sender)):
        sender = factory()
        if sender is not None:
            return name, sender
    return "stdlib", stdlib_send


BACKEND, _send = _pick_sender()


def send(message: str, fds: Sequence[int] = ()) -> bool:
    """Send one notification (newline-separated ``KEY=VALUE`` lines); False if not under systemd."""
    return _send(message, fds)


# --- the well-known messages --------------------------------------------------


def ready() -> bool:
    return send("READY=1")


def status(text: str) -> bool:
    """STATUS= is one line: newlines would start new (bogus) assignments."""
    return send("STATUS=" + " ".join(text.splitlines()))


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def reloading() -> bool:
    """Around reload-zones; answer with ``ready()`` once the new data is served.

    MONOTONIC_USEC is required by systemd >= 253 (Type=notify-reload) and
    ignored by 252, so sending it always keeps us right on both.
    """
    return send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}")


def stopping() -> bool:
    """Only for a real stop. NEVER during a replace hand-off: systemd would
    put the unit in stop-sigterm and fail it after TimeoutStopSec."""
    return send("STOPPING=1")


def watchdog() -> bool:
    return send("WATCHDOG=1")


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when off.

    systemd sets WATCHDOG_USEC (and WATCHDOG_PID) for the ExecStart process
    only. WATCHDOG_PID naming another process means the variables were
    inherited and are not ours, except in a replace: there the old instance
    hands WATCHDOG_USEC over and the new one passes its own pid.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner:
        try:
            owner_pid = int(owner)
        except ValueError:
            return None
        if owner_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 1_000_000 / 2


# --- the replace hand-off -------------------------------------------------------


def barrier(timeout: float = DEFAULT_BARRIER_TIMEOUT) -> bool:
    """Wait until systemd has processed every notification we sent before.

    BARRIER=1 carries a pipe's write end; systemd closes it after handling the
    messages queued ahead of it, and we see POLLHUP on the read end. Raises
    NotifyError if that does not happen within ``timeout`` seconds.
    """
    if notify_socket() is None:
        return False
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            sent = send("BARRIER=1", [write_end])
        finally:
            os.close(write_end)
        if not sent:
            return False
        poller = select.poll()
        poller.register(read_end, select.POLLHUP)
        deadline = time.monotonic() + timeout
        for _ in range(10_000):  # bounded: each round waits out the remaining time
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(InterruptedError):
                if poller.poll(int(remaining * 1000) + 1):
                    return True
        raise NotifyError(f"systemd did not confirm the notification barrier within {timeout:g}s")
    finally:
        os.close(read_end)


def ready_as_main(pid: int, timeout: float = DEFAULT_BARRIER_TIMEOUT) -> bool:
    """Claim the unit for ``pid`` (MAINPID and READY=1 together), then a barrier.

    Call only once fully serving, and tell the old instance to stop only after
    this returned True. False means we are not under systemd.
    """
    if not send(f"MAINPID={pid}\nREADY=1"):
        return False
    return barrier(timeout)
