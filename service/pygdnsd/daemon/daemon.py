"""The running daemon: startup in separate steps, the control handler, and shutdown.

Startup is a sequence of steps an operator (or a replacing instance) can
reason about one at a time::

    load config and zones -> acquire lock -> bind sockets -> write pidfile
    -> drop privileges -> serve

All the slow work comes before the lock, as a replacing instance needs (it
loads while the old one serves); racing starts all load, and the lock lets
exactly one of them go on. The sockets are bound while still root; serving
threads start only once the process runs as the configured user.

``run`` is that sequence for every start; what depends on what runs
already is a ``daemon.start.Start``. A replace (``-R``,
``replace.new_daemon.Replacement``) swaps "acquire lock" and "bind sockets"
for the descriptors the old daemon hands over (``adopt``), and writes the
pidfile only once it serves. The old daemon's side of that conversation is
the ``TakeoverHost`` part of ``Daemon``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pygdnsd.config.options import ListenAddress
from pygdnsd.control import json_answers, tcp_listeners
from pygdnsd.control import server as control_server
from pygdnsd.control.protocol import COMPAT_VERSION, AcmeChallenge, ChallengeBatch
from pygdnsd.control.server import ControlServer, Failed, Outcome
from pygdnsd.daemon import gc_freeze
from pygdnsd.daemon.challenges import ChallengesRefused, HandedOver, LiveChallenges
from pygdnsd.daemon.daemonize import StartupReport
from pygdnsd.daemon.lock import (
    LOCK_NAME,
    SOCKET_NAME,
    InstanceLock,
    ensure_run_dir,
)
from pygdnsd.daemon.pidfile import Pidfile
from pygdnsd.daemon.privileges import User, drop_to, lookup_user
from pygdnsd.daemon.start import FreshStart, Start
from pygdnsd.engine.stats import Stats
from pygdnsd.errors import GdnsdError, describe
from pygdnsd.instance import Instance, Loaded, read_zones
from pygdnsd.instance import load as load_all
from pygdnsd.monitoring.monitor import StateRow
from pygdnsd.replace import new_daemon
from pygdnsd.replace.fd_passing import Expected
from pygdnsd.replace.old_daemon import HandoffSet
from pygdnsd.replace.socket_plan import plan_sockets
from pygdnsd.replace.spawn import Program, spawn_replacement
from pygdnsd.replace.stats_handoff import FinalStats
from pygdnsd.replace.takeover import TakenOver
from pygdnsd.status import process
from pygdnsd.status.rate_ring import RateRing
from pygdnsd.status.server import HTTP_LISTEN, StatusServer
from pygdnsd.status.timeline import RELOAD, REPLACE, Event, Timeline, TimelineView
from pygdnsd.status.zone_facts import ZoneCensus, ZoneFacts
from pygdnsd.systemd import notify, socket_activation
from pygdnsd.systemd.watchdog import Heartbeat
from pygdnsd.transport import fastpath
from pygdnsd.transport.listeners import (
    UDP,
    ListenSocket,
    SocketSpec,
    open_tcp,
    open_udp,
    size_udp_buffers,
    specs_for,
)
from pygdnsd.zones.model import ZoneSet
from pygdnsd.zones.reload import ZoneReloader, refuse_replacing_without_dir
from pygdnsd.zones.watcher import ZonesWatcher

if TYPE_CHECKING:
    from pygdnsd.status.endpoints import Endpoints

log = logging.getLogger("gdnsd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP
CONTROL_STOP_MESSAGE = "Exiting cleanly due to control socket client request"
OLD_DAEMON_LOG_PREFIX = "REPLACE[old daemon]"
HANDED_OVER_MESSAGE = f"{OLD_DAEMON_LOG_PREFIX}: Exiting cleanly at request of new daemon"
REPL_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What the command line asks of a starting instance."""

    cfgdir: Path
    strict_data: bool = False
    idempotent: bool = False  # -i: another running instance counts as success
    replace: bool = False  # -R: take over from a running instance
    # What a REQ_REPL runs: the gdnsd we were started as, with our -D/-l/-S.
    program: Program | None = None


class Daemon:
    """One running gdnsd. Implements ``control.server.ControlHandler``."""

    def __init__(self, loaded: Loaded, program: Program | None = None) -> None:
        config = loaded.config
        self.program = program if program is not None else Program((sys.executable, "-m", "pygdnsd"))
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.user: User | None = None
        if config.username is not None:
            self.user = lookup_user(config.username)
        # Our start on CLOCK_MONOTONIC, placed on a whole second of wall time: a replace
        # carries the start in whole seconds (gdnsd's PSH_SHAND slot), so the start time
        # the status page and /metrics show stays the same across one.
        now = time.time()
        self.started_at = time.monotonic() - (now - int(now))
        self.lock: InstanceLock | None = None
        self.instance = Instance(loaded)
        # ACME DNS-01 challenges (gdnsdctl acme-dns-01), carried over a replace (REQ_TAK2).
        self.acme = LiveChallenges(config.acme_challenge_ttl, config.acme_challenge_dns_ttl, self.instance.set_challenges)
        self.sockets: list[ListenSocket] = []
        # Sockets systemd passed per (host, port, kind): carried over every replace.
        self.activated_counts: dict[tuple[str, int, str], int] = {}
        self.control_listener: socket.socket | None = None
        self.tcp_control: list[ListenSocket] = []  # one per tcp_control address
        self.control: ControlServer | None = None
        self.http: list[ListenSocket] = []  # one per http_listen address
        self.status_server: StatusServer | None = None
        # What the status page shows; a replace hands timeline and rates on.
        self.timeline = Timeline()
        self.rates = RateRing()
        self.zone_census = ZoneCensus()
        self.zones_loaded_at = time.time()
        self._replace_running = False  # a REQ_REPL of ours: it records how the replace went
        self._pid = os.getpid()  # worker processes share our monitor's subscribers: not theirs to record
        self._endpoints: type[Endpoints] | None = None
        if config.http_listen:
            self._endpoints = _status_endpoints()
        self.pidfile: Pidfile | None = None
        # From the start, so a SIGHUP from the moment the pidfile exists is kept as a
        # request (its thread starts once serving).
        dynamic = self.instance.dynamic
        self.reloader = ZoneReloader(
            lambda: read_zones(self.config, dynamic),
            self._swap_zones,
            zones_dir=self.config.zones_dir,
            serving=lambda: self.instance.responder.zones,
            observe=self._reload_ended,
        )
        self.watcher: ZonesWatcher | None = None
        self._stop = threading.Event()
        self._stop_message = ""
        self.watchdog_usec = _watchdog_usec()
        self.last_replace: float | None = None  # wall clock of our own takeover
        self.heartbeat: Heartbeat | None = None
        # The old-daemon side of a replace.
        self.retired = False  # True once a successor has everything: exit, no STOPPING=1
        self.replacing = False  # we are a successor that has not claimed yet: no STOPPING=1 either
        self._successor_conn: socket.socket | None = None
        self._successor_serving = threading.Event()

    # --- startup steps, in order ---------------------------------------------

    @property
    def _owner(self) -> tuple[int, int] | None:
        """Who should own what we create: the configured user, when we are root and will drop."""
        if self.user is None or os.geteuid() != 0:
            return None
        return self.user.owner

    def acquire_lock(self) -> None:
        ensure_run_dir(self.run_dir, self._owner)
        self.take_lock()

    def take_lock(self) -> None:
        self.lock = InstanceLock.acquire(self.run_dir)

    def refuse_takeover(self) -> None:
        refuse_replacing_without_dir(self.config.zones_dir, self.instance.responder.zones)

    @property
    def control_path(self) -> Path:
        return self.run_dir / SOCKET_NAME

    def bind(self) -> None:
        """The DNS sockets and the control sockets, all bound while we may still be root."""
        path = self.control_path
        # Socket activation (gdnsd.socket): use what systemd passed, by label.
        passed = socket_activation.activated(self.instance.endpoints, str(path))
        if passed is None:
            self.sockets = self.instance.bind()
        else:
            for line in socket_activation.describe(passed):
                log.info("%s", line)
            self.activated_counts = passed.counts
            self.sockets = [*passed.dns, *socket_activation.open_unpassed(self.instance.endpoints, passed)]
            self.control_listener = passed.control
        if self.control_listener is None:
            try:
                self.control_listener = control_server.bind_unix_listener(str(path))
            except OSError as exc:
                raise GdnsdError(f"control socket '{path}': cannot bind: {exc.strerror}") from exc
            if self._owner is not None:
                os.chown(path, *self._owner)
        self.tcp_control = tcp_listeners.open_all(self.config.tcp_control)
        self.http = tcp_listeners.open_all(self.config.http_listen, HTTP_LISTEN)

    def handoff_expected(self) -> Expected:
        return Expected(
            self.run_dir / LOCK_NAME,
            self.control_path,
            frozenset(Expected.address_key(address.host, address.port) for address in self.config.tcp_control),
            frozenset(Expected.address_key(address.host, address.port) for address in self.config.http_listen),
        )

    def adopt(self, taken: TakenOver) -> None:
        """Instead of acquire_lock and bind: what the old daemon (gdnsd or ours) handed over.

        DNS sockets whose address is still configured are kept (the same
        kernel sockets, given our buffer sizes); new ones are bound fresh with
        SO_REUSEPORT; ours of removed addresses are closed at once (the old
        daemon reads them until it stops, and the kernel closes them with its copy).
        """
        handed = taken.handed
        if handed.lock_fd is None or handed.control is None:
            raise GdnsdError("the old daemon did not hand over its lock and control socket")
        wanted = [spec for endpoint in self.instance.endpoints for spec in specs_for(endpoint)]
        # Addresses systemd passed sockets for keep exactly those (activation's rule).
        self.activated_counts = socket_activation.counts_from_handoff(taken.extra.get("activated"))
        wanted = socket_activation.keep_for(self.activated_counts, wanted)
        plan = plan_sockets(handed.dns, wanted)
        tcp_control = tcp_listeners.adopt(handed.tcp_control, self.config.tcp_control)
        handed.tcp_control = []
        self.tcp_control = tcp_control
        self.http = tcp_listeners.adopt(handed.http, self.config.http_listen, HTTP_LISTEN)
        handed.http = []
        fresh = [ListenSocket(spec, self._open(spec)) for spec in plan.open]
        addresses = {(spec.host, spec.port) for spec in wanted}
        surplus = []
        for listener in plan.close:
            spec = listener.spec
            if (spec.host, spec.port) in addresses:
                # Fewer threads for a kept address: the kernel spreads its traffic over
                # every socket of the group, so closing one would drop what is queued
                # in it. It is served on until the next full restart.
                log.info("%s: keeping surplus %s socket #%d of %s", new_daemon.NEW_DAEMON_LOG_PREFIX, spec.kind.upper(), spec.index, spec.label)
                surplus.append(listener)
            else:
                log.info("%s: closing the socket of removed address %s %s", new_daemon.NEW_DAEMON_LOG_PREFIX, spec.kind.upper(), spec.label)
                listener.sock.close()
        for listener in plan.reuse:
            if listener.spec.kind == UDP:
                size_udp_buffers(listener.sock, self._endpoint(listener.spec))
        self.lock = InstanceLock.adopt(handed.lock_fd, self.run_dir / LOCK_NAME)
        self.control_listener = handed.control
        self.sockets = [*plan.reuse, *fresh, *surplus]
        handed.lock_fd, handed.control, handed.dns = None, None, []
        usec = taken.extra.get("watchdog_usec")
        if isinstance(usec, int) and usec > 0:
            self.watchdog_usec = usec
        status = taken.extra.get("status")
        if isinstance(status, dict):
            self.timeline = Timeline.from_handoff(status.get("timeline"))
            self.rates = RateRing.from_handoff(status.get("rates"))

    def _endpoint(self, spec: SocketSpec) -> ListenAddress:
        return next(e for e in self.instance.endpoints if (e.host, e.port) == (spec.host, spec.port))

    def _open(self, spec: SocketSpec) -> socket.socket:
        endpoint = self._endpoint(spec)
        log.info("%s: binding new address %s %s", new_daemon.NEW_DAEMON_LOG_PREFIX, spec.kind.upper(), spec.label)
        return open_udp(spec, endpoint) if spec.kind == UDP else open_tcp(spec, endpoint)

    @property
    def pidfile_path(self) -> Path:
        return self.config.pidfile

    def write_pidfile(self) -> None:
        old = self.pidfile
        self.pidfile = Pidfile.write(self.pidfile_path, os.getpid(), self._owner)
        if old is not None:
            old.release()

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

    def first_monitoring_round(self) -> None:
        """Every monitored resource checked once, so the first answers know their states.

        Slow work: a replacing daemon does it while the old one serves on.
        """
        if self.instance.dynamic is not None:
            self.instance.dynamic.monitor.initial_round()

    def serve(self) -> None:
        instance = self.instance
        dynamic = instance.dynamic
        gc_freeze.settle(collect=True)
        if dynamic is not None:
            dynamic.resolvers.reload_listeners.append(self._refresh_workers)
            dynamic.resolvers.start_watching()  # before the workers fork, which then do not watch
        instance.serve(self.sockets)
        self.acme.start()
        if dynamic is not None:
            dynamic.monitor.start()
        # Only now: a reload replaces the workers, which must exist first.
        self.reloader.start()
        if self.control_listener is None:
            raise RuntimeError("serve() before bind()")
        self.control = ControlServer(
            self.control_listener,
            self,
            tcp_listeners=tcp_listeners.listeners(self.tcp_control, self.config.tcp_control),
            takeover_host=self,
        )
        for listener in self.control.listeners[1:]:
            log.info("%s: serving %s requests", listener.label, listener.access.describe())
        self.control.start()
        if dynamic is not None:
            self._states_changed(frozenset())  # the starting point: changes are counted from it
            dynamic.monitor.subscribe(self._states_changed)
        self.heartbeat = Heartbeat(self)
        self.heartbeat.start()
        if self.config.zones_auto_reload:
            self.watcher = ZonesWatcher(self.config.zones_dir, self.reloader.request)
            self.watcher.start()
            log.info("zones_auto_reload: watching '%s' (%s)", self.config.zones_dir, self.watcher.mode)
        log.info("UDP answered by the %s", fastpath.chosen().description)
        log.info("DNS listeners started")

    def absorb_stats(self, final: FinalStats) -> None:
        self.instance.absorb(final.counters)
        if final.started is not None and 0 < final.started <= time.time():
            # The chain's start: uptime runs on (CLOCK_MONOTONIC's origin is ours to shift).
            self.started_at = time.monotonic() - (time.time() - final.started)
        # Only now, with the old daemon's final counts in ours (it stopped accepting scrapes
        # before it sent them): no scrape can see our totals below its.
        self.serve_status()

    def serve_status(self) -> None:
        """Start answering on the http_listen sockets (once; none configured: nothing)."""
        if self.status_server is not None or not self.http:
            return
        config = self.config
        endpoints = self._endpoints or _status_endpoints()
        self.status_server = StatusServer(
            self.http,
            endpoints(self, self.rates),
            allow=config.http_allow,
            max_clients=config.max_http_clients,
            timeout=config.http_timeout,
        )
        self.status_server.start()

    def adopt_challenges(self, batches: Sequence[ChallengeBatch]) -> None:
        self.acme.adopt(batches)

    def _swap_zones(self, zones: ZoneSet) -> None:
        self.instance.set_zones(zones)
        self.zones_loaded_at = time.time()
        self._refresh_workers()

    def _refresh_workers(self) -> None:
        """After new zones or a plugin's new data are in place: workers forked before hold the old."""
        # After the swap, so the new data and the new generation's (still empty) caches are frozen too.
        gc_freeze.settle(collect=False)
        self.instance.refresh_workers()

    # --- running ---------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_stop_signal)
        signal.signal(RELOAD_SIGNAL, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop(f"Exiting cleanly on receipt of terminating signal {signum}")

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
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
        if not (self.retired or self.replacing):
            # Never during a hand-off: systemd would stop the whole unit.
            with contextlib.suppress(notify.NotifyError):
                notify.stopping()
        if self.heartbeat is not None:
            self.heartbeat.close()
        if self.watcher is not None:
            self.watcher.close()
        if self.instance.dynamic is not None:
            self.instance.dynamic.monitor.stop()
        self.acme.close()
        self.instance.stop()
        self.instance.close_sockets()
        for listener in self.sockets:
            listener.sock.close()
        if self.pidfile is not None:
            self.pidfile.remove()
        if self.control is not None:
            self.control.close()
        else:
            for sock in [self.control_listener, *(listener.sock for listener in self.tcp_control)]:
                if sock is not None:
                    sock.close()
        self.reloader.close()
        # Late: in a replace the successor starts answering scrapes only once we are gone.
        if self.status_server is not None:
            self.status_server.close()
        else:
            for listener in self.http:
                listener.sock.close()
        if self.lock is not None:
            self.lock.release()

    # --- ControlHandler -----------------------------------------------------------

    def status(self) -> tuple[tuple[int, int, int], int]:
        return COMPAT_VERSION, os.getpid()

    def zone_count(self) -> int:
        return len(self.instance.responder.zones.zones)

    def current_stats(self) -> Stats:
        return self.instance.total_stats()

    def uptime(self) -> int:
        return int(time.monotonic() - self.started_at)

    def started_wall(self) -> float:
        """Wall clock of our start (or our first predecessor's: ``started_at`` is carried over)."""
        return time.time() - (time.monotonic() - self.started_at)

    def stats_json(self) -> bytes:
        return json_answers.stats_json(self.instance.total_stats(), self.uptime())

    # --- StatusSource (the status page and /metrics) --------------------------------

    def state_rows(self) -> Sequence[StateRow]:
        dynamic = self.instance.dynamic
        return dynamic.monitor.state_rows() if dynamic is not None else []

    def zone_facts(self) -> Sequence[ZoneFacts]:
        return self.zone_census.facts(self.instance.responder.zones, self.zones_loaded_at)

    def worker_pids(self) -> Sequence[int]:
        return self.instance.worker_pids()

    def timeline_view(self) -> TimelineView:
        return self.timeline.view()

    def _states_changed(self, _changed: frozenset[str]) -> None:
        """Monitor subscriber: note state changes for the page (not in worker processes' copies)."""
        dynamic = self.instance.dynamic
        if dynamic is None or os.getpid() != self._pid:
            return
        self.timeline.observe_states({row.name: row.state for row in dynamic.monitor.state_rows()}, time.time())

    def _reload_ended(self, seconds: float, reason: str | None) -> None:
        detail = reason or f"{len(self.instance.responder.zones.zones)} zones"
        self.timeline.record(Event(RELOAD, time.time(), seconds, reason is None, detail))

    def replace_done(self) -> None:
        """We took over: the replace worked, and took from our process's start until now."""
        now = time.time()
        try:
            seconds = now - process.start_time(os.getpid())
        except OSError:
            seconds = 0.0
        self.timeline.record(Event(REPLACE, now, seconds, True, f"PID {os.getpid()} serves"))

    def states_json(self) -> bytes:
        dynamic = self.instance.dynamic
        if dynamic is not None and dynamic.monitor.names():
            return dynamic.monitor.states_json().encode("utf-8")
        return json_answers.states_json({})  # gdnsd's answer for no monitored services

    def reload_zones(self) -> Outcome | Failed:
        with contextlib.suppress(notify.NotifyError):
            notify.reloading()
        try:
            reason = self.reloader.try_reload()
            return Outcome.ACK if reason is None else Failed(reason)
        finally:
            with contextlib.suppress(notify.NotifyError):
                notify.ready()

    def stop(self) -> Outcome:
        self.request_stop(CONTROL_STOP_MESSAGE)
        return Outcome.ACK

    def replace(self) -> Outcome:
        """REQ_REPL: start the installed gdnsd with ``-R``; ACK once it serves and has asked us to stop."""
        self._successor_serving.clear()
        began = time.monotonic()
        self._replace_running = True
        try:
            try:
                successor = spawn_replacement(self.program, Path(self.config.cfgdir))
            except GdnsdError as exc:
                log.error("%s: %s", OLD_DAEMON_LOG_PREFIX, exc)
                self._replace_failed(began, str(exc))
                return Outcome.FAIL
            deadline = time.monotonic() + REPL_TIMEOUT
            while time.monotonic() < deadline:
                if self._successor_serving.wait(0.1):
                    return Outcome.ACK
                if successor.gone() and not self._successor_serving.wait(0.5):
                    reason = (
                        f"the replacement daemon (PID {successor.pid}, {self.program.argv[0]}) exited before taking over"
                    )
                    log.error("%s: %s", OLD_DAEMON_LOG_PREFIX, reason)
                    self._replace_failed(began, reason)
                    return Outcome.FAIL
            reason = f"the replacement daemon did not take over within {REPL_TIMEOUT:g}s"
            log.error("%s: %s", OLD_DAEMON_LOG_PREFIX, reason)
            self._replace_failed(began, reason)
            return Outcome.FAIL
        finally:
            self._replace_running = False

    def _replace_failed(self, began: float, reason: str) -> None:
        self.timeline.record(Event(REPLACE, time.time(), time.monotonic() - began, False, reason))

    # --- TakeoverHost (the old daemon's side of a replace) -------------------------

    def expected_replacement(self) -> int | None:
        return None  # our replacement is a grandchild: any PID may take over

    def challenges(self) -> Sequence[ChallengeBatch]:
        return self.acme.handoff()


    def pause_control_accept(self) -> None:
        if self.control is not None:
            self.control.pause_accepting()

    def handoff(self) -> HandoffSet:
        if self.lock is None or self.control_listener is None:
            raise GdnsdError("nothing to hand over: no lock or control socket")
        extra = {
            "watchdog_usec": self.watchdog_usec,
            "activated": socket_activation.counts_to_handoff(self.activated_counts),
            "status": {"timeline": self.timeline.to_handoff(), "rates": self.rates.to_handoff()},
        }
        return HandoffSet(
            self.lock.fd,
            self.control_listener.fileno(),
            list(self.sockets),
            extra,
            list(self.tcp_control),
            list(self.http),
        )

    def stop_serving(self) -> None:
        log.info("%s: the new daemon serves: stopping here", OLD_DAEMON_LOG_PREFIX)
        self._successor_serving.set()
        if self.heartbeat is not None:
            self.heartbeat.close()  # STATUS= is the new daemon's to say now
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.instance.dynamic is not None:
            self.instance.dynamic.monitor.stop()  # the new daemon monitors now
        self.instance.stop()
        # Our counters are final now: scrapes wait for the new daemon, which answers
        # once it has added them to its own (absorb_stats).
        if self.status_server is not None:
            self.status_server.pause_accepting()

    def final_stats(self) -> dict[str, dict[str, int]]:
        return self.instance.total_stats().snapshot()

    def takeover_failed(self, reason: str) -> None:
        log.error("%s: takeover failed (%s): serving on", OLD_DAEMON_LOG_PREFIX, reason)
        if not self._replace_running:  # a REQ_REPL of ours records its own outcome
            self.timeline.record(Event(REPLACE, time.time(), 0.0, False, f"takeover failed: {reason}"))
        self.acme.resume()
        if self.control is not None:
            self.control.resume_accepting()

    def handed_over(self, connection: socket.socket) -> None:
        # Kept open until we exit: its EOF is how the new daemon sees us gone.
        self._successor_conn = connection
        self.retired = True
        self.request_stop(HANDED_OVER_MESSAGE)

    def acme_add(self, challenges: Sequence[AcmeChallenge]) -> Outcome | Failed:
        try:
            self.acme.add(challenges)
        except HandedOver:
            log.info("Deferring acme-dns-01 request while replace in progress")
            return Outcome.LATER
        except ChallengesRefused as exc:
            log.error("acme-dns-01: refused: %s", exc)
            return Failed(str(exc))
        return Outcome.ACK

    def acme_flush(self) -> Outcome:
        try:
            self.acme.flush()
        except HandedOver:
            log.info("Deferring acme-dns-01-flush request while replace in progress")
            return Outcome.LATER
        return Outcome.ACK


Loader = Callable[[Path, bool], Loaded]


def _status_endpoints() -> type[Endpoints]:
    """The status endpoints, imported only by a daemon that serves them.

    Their Prometheus client library costs about 100 ms to import (measured,
    a third of the daemon's imports), which every start and replace would
    pay; without the library, http_listen is a startup error that says so.
    """
    try:
        from pygdnsd.status.endpoints import Endpoints
    except ImportError as exc:
        raise GdnsdError(
            f"option 'http_listen': /metrics needs the Python package prometheus_client "
            f"(Debian: python3-prometheus-client): {exc}"
        ) from exc
    return Endpoints


def _watchdog_usec() -> int:
    """WatchdogSec as systemd gave it to us (0: none); a replace carries it on."""
    interval = notify.watchdog_interval()
    return 0 if interval is None else int(interval * 2 * 1_000_000)


def run(request: StartRequest, report: StartupReport | None = None, load: Loader = load_all) -> int:
    """Start (or, with ``request.replace``, take over), serve until told to stop, shut down.

    Startup errors raise (GdnsdError). ``report`` (daemonize) hears "ready"
    once serving -- in a replace, once the old daemon is gone too -- or the
    reason startup failed. ``load`` reads config and zones (``instance.load``).
    """
    report = report if report is not None else StartupReport(None)
    start: Start[Daemon] = (
        new_daemon.Replacement(report) if request.replace else FreshStart(request.idempotent)
    )
    daemon: Daemon | None = None
    try:
        start.begin()
        daemon = Daemon(load(request.cfgdir, request.strict_data), request.program)
        daemon.first_monitoring_round()
        daemon.install_signal_handlers()
        if not start.acquire(daemon):
            report.ready()
            return 0
        daemon.drop_privileges()
        daemon.serve()
        start.claim(daemon)
        if daemon.last_replace is not None:
            daemon.replace_done()
        daemon.serve_status()  # a fresh start's; a replace's may have started in absorb_stats
    except BaseException as exc:
        reason = describe(exc) if isinstance(exc, GdnsdError) else f"startup failed: {describe(exc)}"
        start.abandon(reason)
        if daemon is not None:
            with contextlib.suppress(Exception):
                daemon.shutdown()
        report.failed(reason)
        raise
    report.ready(os.getpid())
    daemon.wait()
    daemon.shutdown()
    return 0
