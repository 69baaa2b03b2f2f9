"""How a daemon comes to hold the lock and the sockets, and how it tells the world it serves.

``daemon.run`` is one sequence for every start; what differs between a
fresh start and a replace is behind ``Start``:

* ``FreshStart`` (this module): take the lock, bind, write the pidfile,
  and once serving tell systemd READY=1;
* ``replace.new_daemon.Replacement``: take over from the old daemon (or,
  should none run, start fresh after all), and once serving claim the unit
  or the pidfile and make the old daemon go.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol, TypeVar

from pygdnsd.daemon.lock import AlreadyRunning
from pygdnsd.systemd import notify

log = logging.getLogger("gdnsd")

_Daemon = TypeVar("_Daemon", contravariant=True)


class Start(Protocol[_Daemon]):
    """The steps of a start that depend on what runs already; ``daemon.run`` calls them in order."""

    def begin(self) -> None:
        """Before the slow work (config, zones)."""
        ...

    def acquire(self, daemon: _Daemon) -> bool:
        """Hold the instance lock and the sockets; False: another instance runs and that is success (-i)."""
        ...

    def claim(self, daemon: _Daemon) -> None:
        """We serve: say so (systemd, pidfile) and make any predecessor go."""
        ...

    def abandon(self, reason: str) -> None:
        """Startup failed for ``reason``: leave anything that ran before us as it was."""
        ...


class StartSteps(Protocol):
    """The daemon's steps a fresh start runs (``Daemon`` has them)."""

    def acquire_lock(self) -> None:
        """Create run_dir, take the instance lock; AlreadyRunning if another instance holds it."""
        ...

    def bind(self) -> None: ...

    def write_pidfile(self) -> None: ...


def announce_ready() -> None:
    """READY=1 to systemd, when it runs us; a lost message must not stop a daemon that serves."""
    with contextlib.suppress(notify.NotifyError):
        notify.ready()


class FreshStart:
    """Nothing to take over: lock, bind and pidfile ourselves."""

    def __init__(self, idempotent: bool = False) -> None:
        self.idempotent = idempotent  # -i: another running instance counts as success

    def begin(self) -> None:
        pass

    def acquire(self, daemon: StartSteps) -> bool:
        try:
            daemon.acquire_lock()
        except AlreadyRunning:
            if not self.idempotent:
                raise
            log.info("Another instance is already running, success")
            return False
        daemon.bind()
        # Before privileges drop: the pidfile's directory may be root's.
        daemon.write_pidfile()
        return True

    def claim(self, daemon: StartSteps) -> None:
        del daemon
        announce_ready()

    def abandon(self, reason: str) -> None:
        del reason
