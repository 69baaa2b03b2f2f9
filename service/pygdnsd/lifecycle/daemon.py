"""The running daemon: startup in separate steps, the control handler, and shutdown.

Startup is a sequence of steps an operator (or a replacing instance) can
reason about one at a time::

    load config and zones -> acquire lock -> bind sockets -> write pidfile
    -> drop privileges -> serve

All the slow work comes before the lock, as a replacing instance needs (it
loads while the old one serves); racing starts all load, and the lock lets
exactly one of them go on. The sockets are bound while still root; serving
threads start only once the process runs as the configured user. A replace
(next issue) will swap "acquire lock" and "bind sockets" for descriptors
handed over by the old instance; the other steps stay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pygdnsd.control import server as control_server
from pygdnsd.control.protocol import COMPAT_VERSION, AcmeChallenge
from pygdnsd.control.server import ControlServer, Outcome
from pygdnsd.errors import GdnsdError
from pygdnsd.instance import Instance, Loaded, read_zones, zones_dir
from pygdnsd.instance import load as load_all
from pygdnsd.lifecycle import reports
from pygdnsd.lifecycle.daemonize import StartupReport
from pygdnsd.lifecycle.lock import SOCKET_NAME, AlreadyRunning, InstanceLock, ensure_run_dir
from pygdnsd.lifecycle.pidfile import Pidfile
from pygdnsd.lifecycle.privileges import User, drop_to, lookup_user
from pygdnsd.lifecycle.reload import ZoneReloader
from pygdnsd.lifecycle.watcher import ZonesWatcher
from pygdnsd.transport.listeners import ListenSocket

log = logging.getLogger("gdnsd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP
CONTROL_STOP_MESSAGE = "Exiting cleanly due to control socket client request"


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What the command line asks of a starting instance."""

    cfgdir: Path
    strict_data: bool = False
    idempotent: bool = False  # -i: another running instance counts as success


class Daemon:
    """One running gdnsd. Implements ``control.server.ControlHandler``."""

    def __init__(self, loaded: Loaded) -> None:
        config = loaded.config
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.user: User | None = None
        username = getattr(config, "username", None)
        if username is not None:
            self.user = lookup_user(username)
        self.started_at = time.monotonic()
        self.lock: InstanceLock | None = None
        self.instance = Instance(loaded)
        self.sockets: list[ListenSocket] = []
        self.control_listener: socket.socket | None = None
        self.control: ControlServer | None = None
        self.pidfile: Pidfile | None = None
        self.reloader: ZoneReloader | None = None
        self.watcher: ZonesWatcher | None = None
        self._stop = threading.Event()
        self._stop_message = ""

    # --- startup steps, in order ---------------------------------------------

    @property
    def _owner(self) -> tuple[int, int] | None:
        """Who should own what we create: the configured user, when we are root and will drop."""
        if self.user is None or os.geteuid() != 0:
            return None
        return self.user.owner

    def acquire_lock(self) -> None:
        ensure_run_dir(self.run_dir, self._owner)
        self.lock = InstanceLock.acquire(self.run_dir)

    def bind(self) -> None:
        """The DNS sockets and the control socket, both bound while we may still be root."""
        self.sockets = self.instance.bind()
        path = self.run_dir / SOCKET_NAME
        try:
            self.control_listener = control_server.bind_unix_listener(str(path))
        except OSError as exc:
            raise GdnsdError(f"control socket '{path}': cannot bind: {exc.strerror}") from exc
        if self._owner is not None:
            os.chown(path, *self._owner)

    def write_pidfile(self) -> None:
        path = Path(getattr(self.config, "pidfile", None) or self.run_dir / "gdnsd.pid")
        self.pidfile = Pidfile.write(path, os.getpid(), self._owner)

    def drop_privileges(self) -> None:
        user = self.user
        if user is None:
            return
        if os.geteuid() != 0:
            if os.getuid() == user.uid and os.geteuid() == user.uid:
                return  # started as that user already
            raise GdnsdError(
                f"option 'username' is '{user.name}' but gdnsd runs as uid {os.geteuid()}, "
                "not root: cannot switch users"
            )
        drop_to(user)
        log.info("Dropped privileges to user '%s' (uid %d, gid %d)", user.name, user.uid, user.gid)

    def serve(self) -> None:
        instance = self.instance
        instance.serve(self.sockets)
        self.reloader = ZoneReloader(
            lambda: read_zones(self.config), lambda zones: instance.responder.set_zones(zones)
        )
        self.reloader.start()
        if self.control_listener is None:
            raise RuntimeError("serve() before bind()")
        self.control = ControlServer(self.control_listener, self)
        self.control.start()
        if getattr(self.config, "zones_auto_reload", False):
            self.watcher = ZonesWatcher(zones_dir(self.config), self.reloader.request)
            self.watcher.start()
            log.info("zones_auto_reload: watching '%s' (%s)", zones_dir(self.config), self.watcher.mode)
        log.info("DNS listeners started")

    # --- running ---------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_stop_signal)
        signal.signal(RELOAD_SIGNAL, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop(f"Exiting cleanly on receipt of terminating signal {signum}")

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        if self.reloader is not None:
            self.reloader.request()

    def request_stop(self, message: str) -> None:
        if not self._stop.is_set():
            self._stop_message = message
            self._stop.set()

    def wait(self) -> None:
        """Block until asked to stop. Short waits let the main thread run signal handlers."""
        while not self._stop.wait(0.5):
            pass

    def shutdown(self) -> None:
        """Answer what TCP clients already sent, then let go of everything, the lock last.

        The control server closes after the pidfile is gone, so a ``stop``
        client that sees its connection close sees a stopped daemon.
        """
        if self._stop_message:
            log.info("%s", self._stop_message)
        if self.watcher is not None:
            self.watcher.close()
        self.instance.stop()
        self.instance.close_sockets()
        for listener in self.sockets:
            listener.sock.close()
        if self.pidfile is not None:
            self.pidfile.remove()
        if self.control is not None:
            self.control.close()
        elif self.control_listener is not None:
            self.control_listener.close()
        if self.reloader is not None:
            self.reloader.close()
        if self.lock is not None:
            self.lock.release()

    # --- ControlHandler -----------------------------------------------------------

    def status(self) -> tuple[tuple[int, int, int], int]:
        return COMPAT_VERSION, os.getpid()

    def uptime(self) -> int:
        return int(time.monotonic() - self.started_at)

    def stats_json(self) -> bytes:
        return reports.stats_json(self.instance.stats, self.uptime())

    def states_json(self) -> bytes:
        # No monitored services yet: gdnsd's answer for none.
        return reports.states_json({})

    def reload_zones(self) -> Outcome:
        if self.reloader is None:
            return Outcome.FAIL
        return Outcome.ACK if self.reloader.reload() else Outcome.FAIL

    def stop(self) -> Outcome:
        self.request_stop(CONTROL_STOP_MESSAGE)
        return Outcome.ACK

    def replace(self) -> Outcome:
        log.error("replace: not implemented yet")
        return Outcome.FAIL

    def acme_add(self, challenges: Sequence[AcmeChallenge]) -> Outcome:
        del challenges
        log.error("acme-dns-01: not implemented yet")
        return Outcome.FAIL

    def acme_flush(self) -> Outcome:
        log.error("acme-dns-01-flush: not implemented yet")
        return Outcome.FAIL


Loader = Callable[[Path, bool], Loaded]


def run(request: StartRequest, report: StartupReport | None = None, load: Loader = load_all) -> int:
    """Start, serve until told to stop, shut down. Startup errors raise (GdnsdError).

    ``report`` (daemonize) hears "ready" once serving, or the reason startup
    failed. ``load`` reads config and zones (``instance.load``).
    """
    report = report if report is not None else StartupReport(None)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(load(request.cfgdir, request.strict_data))
        daemon.install_signal_handlers()
        try:
            daemon.acquire_lock()
        except AlreadyRunning:
            if not request.idempotent:
                raise
            log.info("Another instance is already running, success")
            report.ready()
            return 0
        daemon.bind()
        daemon.write_pidfile()
        daemon.drop_privileges()
        daemon.serve()
    except BaseException as exc:
        if daemon is not None:
            with contextlib.suppress(Exception):
                daemon.shutdown()
        report.failed(str(exc) if isinstance(exc, GdnsdError) else f"startup failed: {exc!r}")
        raise
    report.ready()
    daemon.wait()
    daemon.shutdown()
    return 0
