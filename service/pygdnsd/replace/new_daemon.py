"""The new daemon's half of a replace: take over from the old daemon, then retire it.

``Replacement`` is the ``daemon.start.Start`` of ``gdnsd -R``. It watches the
``gdnsd replace`` helper from the start (``HelperWatch``); once config and
zones are loaded (the slow work, done while the old daemon serves on),
``take_over`` finds what runs:

* nothing runs (we get the instance lock): a plain start, as gdnsd -R does;
* the old daemon (gdnsd 3.8.1 or pygdnsd) answers on its control socket:
  TAK1, TAK2, TAKE hand us its live ACME challenges, the lock, the control
  listener and every DNS socket (``Daemon.adopt``); the result, a
  ``Handoff``, stops the old daemon over the same connection once we serve
  (``claim``);
* it does not answer (hung, stopped, or a version without takeover): we bind
  fresh SO_REUSEPORT sockets beside its own and ``Overlap.claim`` stops it by
  signal. Queries queued in its sockets are lost then, and the log says so.

A new daemon whose zones directory is gone refuses to take over at all
(``Successor.refuse_takeover``, before it speaks to the old daemon): it would
serve no zones (``zones.reload`` tells why, and what gdnsd does).

A refused TAK1 (RESP_LATR: another replace is running), an old daemon whose
takeover we do not speak (another major version, answers gdnsd never sends),
a descriptor that is not what a gdnsd hands over, and any other failure
after TAK1 end this daemon with an error before STOP; the old one resumes
by itself. A gdnsd 3.8.1 old daemon SIGKILLs a new daemon that closes the
takeover connection early, so the verdict goes to the helper first
(``daemon.daemon.run``).

Test hook: ``PYGDNSD_TEST_CRASH_AT=after-load|after-fds|before-ready`` makes a
replacing daemon SIGKILL itself at that step (``crash_point``), so tests can
check the old daemon survives a new one dying anywhere before it claims;
``after-claim`` kills it once the old daemon is gone, before its verdict, so
tests can check what the helper says when nothing serves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pygdnsd.control.protocol import ChallengeBatch, ResponseKey
from pygdnsd.daemon.daemonize import StartupReport, reader_gone
from pygdnsd.daemon.initscript_verbs import wait_gone
from pygdnsd.daemon.lock import AlreadyRunning
from pygdnsd.daemon.pidfile import PidfileState, probe
from pygdnsd.daemon.start import StartSteps, announce_ready
from pygdnsd.errors import GdnsdError
from pygdnsd.replace.fd_passing import Expected
from pygdnsd.replace.stats_handoff import FinalStats
from pygdnsd.replace.takeover import (
    TakenOver,
    TakeoverClient,
    TakeoverError,
    TakeoverMismatch,
    TakeoverRefused,
)
from pygdnsd.systemd import notify

log = logging.getLogger("gdnsd")

CRASH_ENV = "PYGDNSD_TEST_CRASH_AT"
CRASH_POINTS = ("after-load", "after-fds", "before-ready", "after-claim")
# A healthy old daemon answers REQ_INFO at once; one that does not within this
# is treated as hung and overlapped.
INFO_TIMEOUT = 5.0
STEP_TIMEOUT = 30.0
# The old daemon answers what it read and closes TCP clients (its threads
# join within 5 s each) before it sends its final counters.
STOP_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0
LOCK_TIMEOUT = 10.0
WATCH_INTERVAL = 0.1

NEW_DAEMON_LOG_PREFIX = "REPLACE[new daemon]"


def event(name: str, old_pid: int | None, **more: object) -> dict[str, object]:
    """Journal fields for a replace event (ignored by the stderr and syslog sinks)."""
    fields: dict[str, object] = {"GDNSD_EVENT": name, "GDNSD_NEW_PID": os.getpid()}
    if old_pid is not None:
        fields["GDNSD_OLD_PID"] = old_pid
    fields.update(more)
    return fields


def crash_point(step: str, environ: Mapping[str, str] | None = None) -> None:
    """The test hook: SIGKILL ourselves if ``$PYGDNSD_TEST_CRASH_AT`` names ``step``."""
    env = os.environ if environ is None else environ
    if env.get(CRASH_ENV) == step:
        log.warning("%s: %s=%s: killing myself (test hook)", NEW_DAEMON_LOG_PREFIX, CRASH_ENV, step)
        os.kill(os.getpid(), signal.SIGKILL)


class HelperWatch:
    """Abort the new daemon if the ``gdnsd replace`` helper goes away before we took over.

    The helper reads our report pipe; its end closing (it timed out, or was
    killed, e.g. by systemd's reload timeout) shows as POLLERR on our end.
    ``commit`` ends the watch: past it we are the daemon, helper or not.
    """

    def __init__(self, report: StartupReport) -> None:
        self.report = report
        self._committed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.report.fd is None:
            return
        self._thread = threading.Thread(target=self._run, name="helper-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self.report.fd
        while fd is not None and not self._committed.wait(WATCH_INTERVAL):
            if reader_gone(fd):
                log.error(
                    "%s: the replace helper went away before the takeover finished; aborting",
                    NEW_DAEMON_LOG_PREFIX,
                    extra=event("replace-failed", None),
                )
                logging.shutdown()
                os._exit(1)

    def commit(self) -> None:
        self._committed.set()
        if self._thread is not None:
            self._thread.join()


class Successor(StartSteps, Protocol):
    """The new daemon, as its replace sees it (``Daemon`` is one)."""

    replacing: bool  # True until we claimed: a failure now must not say STOPPING=1 to systemd
    last_replace: float | None  # wall clock of our takeover, for STATUS=

    @property
    def control_path(self) -> Path: ...

    @property
    def pidfile_path(self) -> Path: ...

    def handoff_expected(self) -> Expected:
        """What the old daemon's descriptors may be, given our config."""
        ...

    def adopt(self, taken: TakenOver) -> None:
        """Instead of acquire_lock and bind: serve on what the old daemon handed over."""
        ...

    def take_lock(self) -> None:
        """The instance lock alone (run_dir exists by now); AlreadyRunning while another holds it."""
        ...

    def refuse_takeover(self) -> None:
        """Raise GdnsdError if what we loaded must not replace a running daemon's data.

        (``Daemon``: our zones are none only because the zones directory is gone.)
        """
        ...

    def absorb_stats(self, final: FinalStats) -> None:
        """Add the old daemon's final counters to ours; its start time is ours too."""
        ...

    def adopt_challenges(self, batches: Sequence[ChallengeBatch]) -> None:
        """Serve the old daemon's live ACME challenges (REQ_TAK2) for what is left of their lifetimes."""
        ...


class Predecessor(Protocol):
    """The old daemon, from the new one's side, once we hold what we need to serve."""

    old_pid: int | None

    def claim(self, daemon: Successor) -> None:
        """We serve: claim the unit or the pidfile, then make the old daemon go."""
        ...

    def abandon(self) -> None:
        """We failed before claiming: let the old daemon carry on."""
        ...


def _announce(daemon: Successor) -> None:
    """Tell the pidfile and systemd (if it runs us) that we are the daemon now.

    The pidfile first: it is the step that may fail, and failing is only safe
    before MAINPID (systemd stops the whole unit when a claimed main PID dies).
    """
    daemon.write_pidfile()
    try:
        notify.ready_as_main(os.getpid())
    except notify.NotifyError as exc:
        # MAINPID went out but is unconfirmed: carry on, the old daemon must go anyway.
        log.error("%s: %s", NEW_DAEMON_LOG_PREFIX, exc)


class Handoff:
    """The old daemon handed us its sockets; ``claim`` stops it over the takeover connection."""

    def __init__(self, client: TakeoverClient, old_pid: int) -> None:
        self.client = client
        self.old_pid: int | None = old_pid

    def claim(self, daemon: Successor) -> None:
        _announce(daemon)
        try:
            final = self.client.stop_old(STOP_TIMEOUT)
        except GdnsdError as exc:
            log.error("%s: stopping the old daemon (PID %s) failed: %s", NEW_DAEMON_LOG_PREFIX, self.old_pid, exc)
        else:
            daemon.absorb_stats(final)
        finally:
            self.client.close()
        # Past the point of no return: we serve on whatever happens to the old daemon.
        try:
            _make_gone(self.old_pid, wait_first=True)
        except GdnsdError as exc:
            log.error("%s", exc)

    def abandon(self) -> None:
        # Closing the connection is the old daemon's cue to resume.
        self.client.close()


class Overlap:
    """The old daemon did not answer: we bound our own sockets beside its; ``claim`` signals it."""

    def __init__(self, old_pid: int | None) -> None:
        self.old_pid = old_pid

    def claim(self, daemon: Successor) -> None:
        _announce(daemon)
        # Past the point of no return: we serve on whatever happens to the old daemon.
        try:
            _make_gone(self.old_pid, wait_first=False)
            _lock_when_free(daemon)
        except GdnsdError as exc:
            log.error("%s", exc)

    def abandon(self) -> None:
        pass


def _make_gone(pid: int | None, wait_first: bool) -> None:
    """Make sure ``pid`` exits: wait (if it was asked to stop), SIGTERM (and SIGCONT, should
    it be stopped), then SIGKILL, each with a bounded wait."""
    if pid is None or pid == os.getpid():
        return
    steps: list[tuple[signal.Signals | None, float]] = [
        (signal.SIGTERM, EXIT_TIMEOUT),
        (signal.SIGKILL, KILL_TIMEOUT),
    ]
    if wait_first:
        steps.insert(0, (None, EXIT_TIMEOUT))
    for signum, patience in steps:
        if signum is not None:
            log.warning("%s: sending %s to the old daemon (PID %d)", NEW_DAEMON_LOG_PREFIX, signum.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
                os.kill(pid, signal.SIGCONT)
        if wait_gone(pid, patience):
            return
    raise GdnsdError(f"{NEW_DAEMON_LOG_PREFIX}: the old daemon (PID {pid}) did not exit, even after SIGKILL")


def _lock_when_free(daemon: Successor) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT
    for _ in range(int(LOCK_TIMEOUT / 0.05) + 1):
        try:
            daemon.take_lock()
            return
        except AlreadyRunning:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise GdnsdError(f"{NEW_DAEMON_LOG_PREFIX}: the instance lock is still held after the old daemon was stopped")


def _overlap(daemon: Successor, why: str) -> Overlap:
    found = probe(daemon.pidfile_path)
    old_pid = found.pid if found.state is PidfileState.RUNNING else None
    log.warning(
        "%s: the old daemon (PID %s) cannot be reached over its control socket (%s): "
        "binding fresh sockets beside its own and stopping it by signal; queries may be lost",
        NEW_DAEMON_LOG_PREFIX,
        old_pid if old_pid is not None else "unknown",
        why,
        extra=event("replace-overlap", old_pid),
    )
    daemon.bind()
    return Overlap(old_pid)


def take_over(daemon: Successor, hold: Callable[[Predecessor], None] = lambda _: None) -> Predecessor | None:
    """Get the lock, the control listener and the DNS sockets; None if nothing ran.

    Nothing running makes this a fresh start: the pidfile is written here,
    and ``claim`` is only READY=1. ``hold`` gets the predecessor as soon as
    the old daemon is locked onto us (TAK1), so a failure after that can
    still ``abandon`` it.
    """
    try:
        daemon.acquire_lock()
    except AlreadyRunning:
        # Before we speak to the old daemon, so a refusal leaves it untouched.
        daemon.refuse_takeover()
    else:
        log.info("%s: no daemon is running: starting normally", NEW_DAEMON_LOG_PREFIX)
        daemon.bind()
        daemon.write_pidfile()  # as a fresh start does, before privileges drop
        return None
    path = str(daemon.control_path)
    try:
        client = TakeoverClient.connect(path, os.getpid(), INFO_TIMEOUT)
    except TakeoverError as exc:
        return _overlap(daemon, str(exc))
    try:
        _version, old_pid = client.info()
        client.announce()
    except TakeoverMismatch as exc:
        client.close()
        raise GdnsdError(f"{NEW_DAEMON_LOG_PREFIX}: {exc}") from exc
    except TakeoverRefused as exc:
        client.close()
        if exc.response == ResponseKey.LATR:
            raise GdnsdError(
                f"{NEW_DAEMON_LOG_PREFIX}: another replace is in progress (the old daemon answered RESP_LATR); try again later"
            ) from exc
        return _overlap(daemon, str(exc))
    except TakeoverError as exc:
        client.close()
        return _overlap(daemon, str(exc))
    log.info(
        "%s: taking over from the old daemon (PID %d, %s)",
        NEW_DAEMON_LOG_PREFIX,
        old_pid,
        client.old_kind,
        extra=event("replace-begin", old_pid),
    )
    client.step_timeout = STEP_TIMEOUT
    handoff = Handoff(client, old_pid)
    # From here the caller closes the connection, once it has told its helper
    # why it failed: a gdnsd old daemon kills a new daemon that hangs up first.
    hold(handoff)
    try:
        batches = client.challenges()
        taken = client.take(daemon.handoff_expected())
    except GdnsdError as exc:
        raise GdnsdError(f"{NEW_DAEMON_LOG_PREFIX}: taking over from PID {old_pid} failed: {exc}") from exc
    try:
        crash_point("after-fds")
        daemon.adopt(taken)
        daemon.adopt_challenges(batches)
    except BaseException:
        taken.handed.close()
        raise
    return handoff


class Replacement:
    """The ``daemon.start.Start`` of ``gdnsd -R``: take over from the running daemon, then retire it."""

    def __init__(self, report: StartupReport) -> None:
        self.watch = HelperWatch(report)
        self.predecessor: Predecessor | None = None

    def begin(self) -> None:
        self.watch.start()

    def acquire(self, daemon: Successor) -> bool:
        crash_point("after-load")
        daemon.replacing = True
        self.predecessor = take_over(daemon, self._hold)
        return True

    def _hold(self, predecessor: Predecessor) -> None:
        self.predecessor = predecessor

    def claim(self, daemon: Successor) -> None:
        predecessor = self.predecessor
        if predecessor is None:  # nothing ran: a fresh start after all
            self.watch.commit()
            announce_ready()
        else:
            crash_point("before-ready")
            self.watch.commit()
            predecessor.claim(daemon)
            crash_point("after-claim")
            daemon.last_replace = time.time()
            log.info(
                "%s: replace complete: serving as PID %d, the old daemon (PID %s) is gone",
                NEW_DAEMON_LOG_PREFIX,
                os.getpid(),
                predecessor.old_pid,
                extra=event("replace-done", predecessor.old_pid),
            )
        daemon.replacing = False

    def abandon(self, reason: str) -> None:
        self.watch.commit()  # we are failing anyway: the watch must not race report.failed
        predecessor = self.predecessor
        old_pid = predecessor.old_pid if predecessor is not None else None
        log.error("%s: replace failed: %s", NEW_DAEMON_LOG_PREFIX, reason, extra=event("replace-failed", old_pid))
        # The helper hears why before the old daemon hears us go: a gdnsd one SIGKILLs us then.
        self.watch.report.failed(reason)
        if predecessor is not None:
            predecessor.abandon()
