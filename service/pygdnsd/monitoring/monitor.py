"""The registry of monitored resources, their checks and their states.

Resolver plugins register what they need at config time (``add`` for
"address-or-CNAME/service_type", ``add_virtual`` for names that only
admin_state can set, like metafo's datacenters). ``initial_round`` checks
everything once, in parallel, each check bounded by its service type's
timeout, and sets states without anti-flap. ``start`` then runs the checks on
their intervals on a thread of their own (an asyncio loop), and watches the
admin_state file and extfile files by polling their stat.

The DNS path only reads ``states``: an immutable mapping replaced as a whole
on every change, so readers never lock or wait. Subscribers are called (on
the monitor's thread) with the names whose effective state changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pygdnsd.errors import ConfigError
from pygdnsd.monitoring import admin_state, checks, extfile
from pygdnsd.monitoring.antiflap import Tracker, first_result, next_result
from pygdnsd.monitoring.service_types import (
    AlwaysDown,
    Extfile,
    Extmon,
    Fixed,
    HttpStatus,
    ServiceType,
    TcpConnect,
    Unusable,
)
from pygdnsd.monitoring.sttl import Sttl

log = logging.getLogger("pygdnsd.monitoring")

Subscriber = Callable[[frozenset[str]], None]
# How often files (admin_state, direct extfile) are polled for changes.
FILE_POLL_SECONDS = 0.2


class UnknownServiceType(ConfigError):
    """A monitoring request names a service type the config does not define."""

    def __init__(self, service_type: str, thing: str) -> None:
        super().__init__(
            f"invalid service type {service_type!r} in monitoring request for {thing!r}"
        )
        self.service_type = service_type


# gdnsd marks a state forced by admin_state with this suffix ("DOWN!").
FORCED_MARK = "!"


@dataclass(frozen=True, slots=True)
class StateRow:
    """One name's line of ``gdnsdctl states``: its effective state and the monitor's own.

    ``state`` is UP or DOWN, with ``FORCED_MARK`` when admin_state forces it,
    or NA; ``real_state`` is what the checks say: UP, DOWN, or NA (never checked).
    """

    name: str
    state: str
    real_state: str

    @property
    def forced(self) -> bool:
        return self.state.endswith(FORCED_MARK)


@dataclass
class _Resource:
    name: str
    thing: str
    stype: ServiceType
    tracker: Tracker | None = None
    real: Sttl | None = None


@dataclass
class _FileWatch:
    path: Path
    stamp: tuple[int, int, int, int] | None = None


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)


def _changed(old: Mapping[str, Sttl], new: Mapping[str, Sttl]) -> frozenset[str]:
    return frozenset(n for n in set(old) | set(new) if old.get(n) != new.get(n))


@dataclass
class Monitor:
    service_types: Mapping[str, ServiceType]
    state_dir: Path
    _resources: dict[str, _Resource] = field(default_factory=dict)
    # Every name, monitored or virtual, in registration order: gdnsd's order
    # in ``gdnsdctl states`` (metafo's datacenters, each followed by its CNAME's
    # states, then the other plugins' addresses). A dict as an ordered set.
    _names: dict[str, None] = field(default_factory=dict)
    _forced: dict[str, Sttl] = field(default_factory=dict)
    _overrides: tuple[admin_state.Override, ...] = ()
    _states: Mapping[str, Sttl] = field(default_factory=lambda: MappingProxyType({}))
    _subscribers: list[Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    # The admin_state file as last read: the watcher starts from it, so a change
    # made between the startup read and ``start`` is not missed.
    _admin_read: bool = False
    _admin_stamp: tuple[int, int, int, int] | None = None
    # Each direct extfile as last read, by service type, for the same reason:
    # a file written just after startup must still be loaded.
    _extfile_stamps: dict[str, tuple[int, int, int, int] | None] = field(default_factory=dict)

    # -- registration (config time) ----------------------------------------

    def add(self, thing: str, service_type: str) -> str:
        """Monitor ``thing`` (address text or CNAME) with ``service_type``; returns its state name."""
        stype = self.service_types.get(service_type)
        if stype is None:
            raise UnknownServiceType(service_type, thing)
        if not self._resources:
            # gdnsd checks every service type once anything is monitored.
            for defined in self.service_types.values():
                if isinstance(defined.check, Unusable):
                    raise ConfigError(defined.check.problem)
        name = f"{thing}/{service_type}"
        if name not in self._resources:
            self._names[name] = None
            resource = _Resource(name, thing, stype)
            if isinstance(stype.check, Fixed):
                resource.real = Sttl(down=stype.check.down, ttl=stype.check.ttl)
            self._resources[name] = resource
            self._publish()
        return name

    def add_virtual(self, name: str) -> str:
        """A name with no check whose state only admin_state sets (state "NA" otherwise)."""
        self._names[name] = None
        return name

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    # -- reading -----------------------------------------------------------

    @property
    def states(self) -> Mapping[str, Sttl]:
        """Effective state of every name that has one (unforced virtual names are absent)."""
        return self._states

    def names(self) -> list[str]:
        return list(self._names)

    def state_rows(self) -> list[StateRow]:
        """Every name's states as ``gdnsdctl states`` shows them, in registration order."""
        rows = []
        for name in self.names():
            resource = self._resources.get(name)
            real = resource.real if resource is not None else None
            forced = self._forced.get(name)
            real_text = "NA" if real is None else ("DOWN" if real.down else "UP")
            if forced is not None:
                state_text = ("DOWN" if forced.down else "UP") + FORCED_MARK
            else:
                state_text = real_text
            rows.append(StateRow(name, state_text, real_text))
        return rows

    def states_json(self) -> str:
        """What ``gdnsdctl states`` prints (gdnsd 3.8.1's layout, names in registration order)."""
        rows = [
            f'\t{json.dumps(row.name)}: {{"state": "{row.state}", "real_state": "{row.real_state}"}}'
            for row in self.state_rows()
        ]
        if not rows:
            return "{\n}\n"
        return "{\n" + ",\n".join(rows) + "\n}\n"

    # -- state changes -----------------------------------------------------

    def _publish(self) -> frozenset[str]:
        """Rebuild the effective states; returns the names whose state changed."""
        new: dict[str, Sttl] = {}
        for name, resource in self._resources.items():
            if resource.real is not None:
                new[name] = resource.real
        new.update(self._forced)
        changed = _changed(self._states, new)
        self._states = MappingProxyType(new)
        return changed

    def adopt(self, states: Mapping[str, Sttl]) -> None:
        """Take a whole snapshot from elsewhere: how a worker process follows its instance.

        A worker's monitor runs no checks (its threads did not survive the
        fork); the instance pushes each new ``states`` and the worker's
        subscribers hear the changed names as they would from a check. The
        worker has no other writer, hence no lock (one held at fork time
        would never be released there).
        """
        changed = _changed(self._states, states)
        self._states = MappingProxyType(dict(states))
        self._notify(changed)

    def _notify(self, changed: frozenset[str]) -> None:
        if not changed:
            return
        for callback in list(self._subscribers):
            try:
                callback(changed)
            except Exception:  # a subscriber's bug must not stop monitoring
                log.exception("monitor state subscriber failed")

    def _set_real(self, updates: dict[str, tuple[Tracker | None, Sttl]]) -> None:
        with self._lock:
            for name, (tracker, sttl) in updates.items():
                resource = self._resources[name]
                if resource.real is None:
                    log.info("state of '%s' initialized to %s", name, sttl.text())
                elif resource.real.down != sttl.down:
                    forced = self._forced.get(name)
                    log.info(
                        "state of '%s' changed from %s to %s%s",
                        name,
                        resource.real.text(),
                        sttl.text(),
                        "" if forced is None else f", effective state remains administratively forced to {forced.text()}",
                    )
                resource.tracker = tracker
                resource.real = sttl
            changed = self._publish()
        self._notify(changed)

    def record_result(self, name: str, ok: bool) -> None:
        """Feed one check result through the anti-flap machine (first result: set directly)."""
        resource = self._resources[name]
        t = resource.stype.thresholds
        tracker = (
            first_result(ok) if resource.tracker is None else next_result(resource.tracker, ok, t)
        )
        self._set_real({name: (tracker, tracker.sttl(t))})

    def set_direct(self, name: str, state: Sttl) -> None:
        """A final state from a source that did its own anti-flap (direct extfile/extmon)."""
        self._set_real({name: (None, state)})

    def reload_admin_state(self, startup: bool = False) -> None:
        """(Re)read admin_state; a bad file keeps the previous overrides and logs why.

        Logs what it does in gdnsd 3.8.1's words, which operators grep for.
        """
        path = self.state_dir / admin_state.FILE_NAME
        # Taken before reading: a change made while reading shows at the next poll.
        self._admin_read, self._admin_stamp = True, _stamp(path)
        exists = path.exists()
        if startup and not exists:
            log.info("admin_state: state file '%s' does not yet exist at startup", path)
            return
        if exists:
            log.info("admin_state: (re-)loading state file '%s'...", path)
        else:
            log.info("admin_state: state file '%s' deleted, clearing any forced states...", path)
        try:
            overrides = admin_state.read_overrides(path)
        except (ConfigError, OSError) as exc:
            log.error("admin_state: %s", exc)
            log.error(
                "admin_state: file '%s' had errors; all contents were ignored "
                "and any current forced states are unaffected",
                path,
            )
            return
        names = self.names()
        for pattern in admin_state.unmatched(overrides, names):
            log.warning("admin_state: glob '%s' did not match anything!", pattern)
        with self._lock:
            before = self._forced
            self._overrides = overrides
            self._forced = admin_state.forced_states(overrides, names)
            changed = self._publish()
        self._log_forcing(before, self._forced)
        log.info("admin_state: load complete%s", "" if exists else " (file deleted)")
        self._notify(changed)

    def _real_text(self, name: str) -> str:
        resource = self._resources.get(name)
        return "NA" if resource is None or resource.real is None else resource.real.text()

    def _log_forcing(self, before: Mapping[str, Sttl], after: Mapping[str, Sttl]) -> None:
        for name in self.names():
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            real = self._real_text(name)
            if old is None and new is not None:
                log.info(
                    "admin_state: state of '%s' forced to %s, real state is %s",
                    name, new.text(), real,
                )
            elif old is not None and new is not None:
                log.info(
                    "admin_state: state of '%s' re-forced from %s to %s, real state is %s",
                    name, old.text(), new.text(), real,
                )
            elif old is not None:
                log.info(
                    "admin_state: state of '%s' no longer forced (was forced to %s), "
                    "real and current state is %s",
                    name, old.text(), real,
                )

    # -- checking ----------------------------------------------------------

    def _checked(self) -> list[_Resource]:
        return [
            r for r in self._resources.values() if not isinstance(r.stype.check, (Fixed, Extfile))
        ]

    def _extfile_types(self) -> dict[str, ServiceType]:
        return {
            r.stype.name: r.stype
            for r in self._resources.values()
            if isinstance(r.stype.check, Extfile)
        }

    async def _check_once(self, resource: _Resource) -> bool:
        check = resource.stype.check
        timeout = resource.stype.timeout
        if isinstance(check, Extmon):
            return await checks.extmon(resource.thing, check, timeout)
        try:
            if isinstance(check, TcpConnect):
                return await asyncio.wait_for(checks.tcp_connect(resource.thing, check), timeout)
            if isinstance(check, HttpStatus):
                return await asyncio.wait_for(checks.http_status(resource.thing, check), timeout)
        except TimeoutError:
            return False
        if isinstance(check, AlwaysDown):
            return False
        raise AssertionError(f"no check for {check!r}")

    def _apply_check(self, resource: _Resource, ok: bool) -> None:
        check = resource.stype.check
        if isinstance(check, Extmon) and check.direct:
            self.set_direct(resource.name, Sttl(down=not ok, ttl=resource.stype.interval))
        else:
            self.record_result(resource.name, ok)

    def _apply_extfile(self, stype: ServiceType, initial: bool) -> None:
        check = stype.check
        assert isinstance(check, Extfile)
        things = {r.thing: r.name for r in self._resources.values() if r.stype is stype}
        # Taken before reading: a change made while reading shows at the next poll.
        self._extfile_stamps[stype.name] = _stamp(check.file)
        # gdnsd goes through a file's things sorted (its log lines come in that order).
        results = extfile.load(stype.name, check, sorted(things))
        if results is None:
            if initial:
                self._start_up(list(things.values()))
            return
        for thing, state in results.items():
            name = things[thing]
            if check.direct:
                self.set_direct(name, state)
            else:
                self.record_result(name, not state.down)
        extfile.log_loaded(stype.name, check)

    def _start_up(self, names: list[str]) -> None:
        """Give states that no check has set yet gdnsd's initial UP/MAX, quietly.

        gdnsd starts every state there and logs nothing of it: resources of an
        extfile missing at startup stay UP (whatever ``def_down`` says) until
        the file loads, and admin_state reports their real state as UP/MAX.
        """
        with self._lock:
            for name in names:
                resource = self._resources[name]
                if resource.real is None:
                    resource.real = Sttl(down=False)
            changed = self._publish()
        self._notify(changed)

    def initial_round(self, timeout: float | None = None) -> None:
        """Check every resource once, all at once; returns when all are done.

        Each check is bounded by its own timeout, so this takes about the
        longest timeout; ``timeout`` is an extra overall bound (seconds).
        """
        started = time.monotonic()
        # gdnsd's order: the admin_state file is seen before the round, read after it.
        admin_file = self.state_dir / admin_state.FILE_NAME
        if admin_file.exists():
            log.info("admin_state: checking state file '%s'...", admin_file)
        log.info("Starting initial round of monitoring ...")
        for stype in self._extfile_types().values():
            self._apply_extfile(stype, initial=True)
        resources = self._checked()
        if resources:
            asyncio.run(self._initial(resources, timeout))
        log.info("Initial round of monitoring complete")
        self.reload_admin_state(startup=True)
        # Startup time is dominated by this round; the line lets operators (and
        # the daemon-level tests) see that it cost one timeout, not one per check.
        log.debug(
            "initial monitoring round: %d checks in %.3f s",
            len(resources),
            time.monotonic() - started,
        )

    async def _initial(self, resources: list[_Resource], timeout: float | None) -> None:
        async def one(resource: _Resource) -> None:
            ok = await self._check_once(resource)
            self._apply_check(resource, ok)

        tasks = [asyncio.ensure_future(one(r)) for r in resources]
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for resource, task in zip(resources, tasks, strict=True):
            if task in pending or task.exception() is not None:
                self._apply_check(resource, False)

    # -- background runner -------------------------------------------------

    def start(self) -> None:
        """Run checks on their intervals and watch files, on a background thread."""
        if self._thread is not None:
            return
        self._stopping.clear()
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            ready.set()
            try:
                loop.run_until_complete(self._run())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="pygdnsd-monitor", daemon=True)
        self._thread.start()
        ready.wait(5.0)

    def stop(self) -> None:
        """Stop the runner; running extmon children are killed and reaped."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._stopping.set()
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: None)
        thread.join(timeout=10.0)
        self._thread = None
        self._loop = None

    async def _run(self) -> None:
        tasks = [asyncio.ensure_future(self._poll_resource(r)) for r in self._checked()]
        for stype in self._extfile_types().values():
            tasks.append(asyncio.ensure_future(self._poll_extfile(stype)))
        tasks.append(asyncio.ensure_future(self._watch_admin_state()))
        try:
            while not self._stopping.is_set():
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll_resource(self, resource: _Resource) -> None:
        semaphore = self._semaphore(resource.stype)
        interval = resource.stype.interval
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            if semaphore is not None:
                async with semaphore:
                    ok = await self._check_once(resource)
            else:
                ok = await self._check_once(resource)
            self._apply_check(resource, ok)

    _semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def _semaphore(self, stype: ServiceType) -> asyncio.Semaphore | None:
        check = stype.check
        if not isinstance(check, Extmon) or check.max_proc == 0:
            return None
        if stype.name not in self._semaphores:
            self._semaphores[stype.name] = asyncio.Semaphore(check.max_proc)
        return self._semaphores[stype.name]

    async def _poll_extfile(self, stype: ServiceType) -> None:
        check = stype.check
        assert isinstance(check, Extfile)
        if not check.direct:
            while True:
                await asyncio.sleep(stype.interval)
                self._apply_extfile(stype, initial=False)
        read = self._extfile_stamps
        watch = _FileWatch(check.file, read[stype.name] if stype.name in read else _stamp(check.file))
        while True:
            await asyncio.sleep(FILE_POLL_SECONDS)
            stamp = _stamp(watch.path)
            if stamp != watch.stamp:
                watch.stamp = stamp
                self._apply_extfile(stype, initial=False)

    async def _watch_admin_state(self) -> None:
        watch = _FileWatch(self.state_dir / admin_state.FILE_NAME)
        watch.stamp = self._admin_stamp if self._admin_read else _stamp(watch.path)
        while True:
            if _stamp(watch.path) != watch.stamp:
                self.reload_admin_state()
                watch.stamp = self._admin_stamp
            await asyncio.sleep(FILE_POLL_SECONDS)
