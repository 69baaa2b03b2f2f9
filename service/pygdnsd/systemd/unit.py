"""The initscript verbs through systemd, when systemd runs this config's daemon as gdnsd.service.

A daemon started by systemd must be stopped and replaced by systemd:
replaced behind its back, the new instance would live outside the unit's
cgroup and systemd would think the service died. So when systemd is PID 1
(/run/systemd/system exists), the unit is active, and its MainPID is the
daemon of the config dir the operator named, ``stop`` becomes StopUnit and
``restart``/``replace`` become ReloadUnit (the unit's ExecReload is the
overlapped replace), both over D-Bus (org.freedesktop.systemd1), waiting
for the job to finish. We are never routed when we run inside the unit's
own cgroup: that is systemd running our ExecReload.

Jobs are waited for by polling the job object until it is gone (bounded):
no main loop is needed, and the outcome is then read from the unit itself
(ReloadResult, ActiveState), which is what ``systemctl`` reports too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SYSTEMD = "org.freedesktop.systemd1"
UNIT = "gdnsd.service"
RUNNING_STATES = ("active", "reloading")
JOB_POLL_SECONDS = 0.1


class SystemdUnitError(Exception):
    """systemd could not be asked, or refused (the message says what systemd said)."""


class Bus(Protocol):
    """What we use of a pydbus bus: ``get(service, object_path)`` returns a proxy."""

    def get(self, bus_name: str, object_path: str | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class UnitState:
    name: str
    active: str  # ActiveState: active, reloading, inactive, failed, activating, deactivating
    sub: str  # SubState: running, reload, dead, ...
    main_pid: int  # 0: none
    result: str  # Service.Result: success or why the last run failed
    reload_result: str  # Service.ReloadResult: success or why the last reload failed

    @property
    def running(self) -> bool:
        return self.active in RUNNING_STATES

    def describe(self) -> str:
        pid = f"MainPID {self.main_pid}" if self.main_pid else "no MainPID"
        return f"{self.name}: {self.active} ({self.sub}), {pid}"


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A finished job: the unit before and after it."""

    before: UnitState
    after: UnitState
    finished: bool  # False: the job was still queued or running at the deadline


def systemd_booted(root: Path = Path("/")) -> bool:
    """sd_booted(3): systemd is PID 1 of this host (or container)."""
    return (root / "run" / "systemd" / "system").is_dir()


def in_unit_cgroup(unit: str = UNIT, cgroup_file: Path = Path("/proc/self/cgroup")) -> bool:
    """Whether we run inside ``unit``'s cgroup: then systemd runs us (ExecReload, ExecStop)."""
    try:
        text = cgroup_file.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if unit in path.split("/"):
            return True
    return False


def system_bus() -> Bus:
    """The system bus via pydbus (imported here: hosts without systemd need neither it nor gi)."""
    try:
        import pydbus
    except ImportError as exc:
        raise SystemdUnitError(f"cannot talk to systemd: pydbus is not installed ({exc})") from exc
    try:
        bus: Bus = pydbus.SystemBus()
    except Exception as exc:  # GLib.Error: the bus is not there or refused us
        raise SystemdUnitError(f"cannot connect to the system bus: {exc}") from exc
    return bus


def _dbus_message(exc: Exception) -> str:
    """GLib.Error text without its 'g-dbus-error-name-quark: GDBus.Error:' clutter."""
    text = str(exc)
    return text.split("GDBus.Error:", 1)[-1].strip()


class SystemdUnit:
    """One unit of the systemd manager, over a pydbus-shaped bus."""

    def __init__(self, bus: Bus, name: str = UNIT) -> None:
        self.bus = bus
        self.name = name
        try:
            self.manager = bus.get(SYSTEMD, "/org/freedesktop/systemd1")
        except Exception as exc:
            raise SystemdUnitError(f"cannot reach systemd on the system bus: {_dbus_message(exc)}") from exc

    def _unit(self) -> Any:
        try:
            path = self.manager.LoadUnit(self.name)
            return self.bus.get(SYSTEMD, path)
        except Exception as exc:
            raise SystemdUnitError(f"systemd cannot load {self.name}: {_dbus_message(exc)}") from exc

    def state(self) -> UnitState:
        unit = self._unit()
        try:
            return UnitState(
                name=self.name,
                active=str(unit.ActiveState),
                sub=str(unit.SubState),
                main_pid=int(unit.MainPID),
                result=str(unit.Result),
                reload_result=str(getattr(unit, "ReloadResult", "")),
            )
        except Exception as exc:
            raise SystemdUnitError(f"cannot read the state of {self.name}: {_dbus_message(exc)}") from exc

    def _job_pending(self, job_path: str) -> bool:
        try:
            self.bus.get(SYSTEMD, job_path).State  # noqa: B018 -- reading it is the probe
        except Exception:
            return False  # gone: the job finished
        return True

    def _run_job(self, method: str, timeout: float) -> JobOutcome:
        before = self.state()
        try:
            job_path = getattr(self.manager, method)(self.name, "replace")
        except Exception as exc:
            raise SystemdUnitError(f"systemd refused {method} {self.name}: {_dbus_message(exc)}") from exc
        deadline = time.monotonic() + timeout
        finished = False
        while True:
            if not self._job_pending(str(job_path)):
                finished = True
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(JOB_POLL_SECONDS)
        return JobOutcome(before, self.state(), finished)

    def stop(self, timeout: float) -> JobOutcome:
        return self._run_job("StopUnit", timeout)

    def reload(self, timeout: float) -> JobOutcome:
        return self._run_job("ReloadUnit", timeout)


def unit_of_daemon(daemon_pid: int | None, bus: Bus | None = None, name: str = UNIT) -> SystemdUnit | None:
    """The unit when systemd runs the daemon at ``daemon_pid`` as its main process, else None.

    None also when systemd is not PID 1, when we run inside the unit (systemd
    runs us), or when the bus cannot be reached (then nothing runs under it
    that we could see).
    """
    if daemon_pid is None or not systemd_booted() or in_unit_cgroup(name):
        return None
    try:
        unit = SystemdUnit(bus if bus is not None else system_bus(), name)
        state = unit.state()
    except SystemdUnitError:
        return None
    return unit if state.running and state.main_pid == daemon_pid else None
