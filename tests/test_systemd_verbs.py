"""The systemd-aware verbs over a fake bus shaped like pydbus's proxies of org.freedesktop.systemd1."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pygdnsd.systemd import unit as systemd_unit
from pygdnsd.systemd import unit_verbs
from pygdnsd.systemd.unit import SYSTEMD, SystemdUnit, SystemdUnitError, UnitState

UNIT_PATH = "/org/freedesktop/systemd1/unit/gdnsd_2eservice"


class DBusError(Exception):
    """Stands in for GLib.Error as pydbus raises it."""


@dataclass
class FakeUnit:
    ActiveState: str = "active"
    SubState: str = "running"
    MainPID: int = 100
    Result: str = "success"
    ReloadResult: str = "success"


@dataclass
class FakeJob:
    State: str = "running"


@dataclass
class FakeManager:
    unit: FakeUnit
    jobs: dict[str, FakeJob]
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    # What a job does to the unit when it finishes, and after how many probes.
    effect: dict[str, Any] = field(default_factory=dict)
    polls_until_done: int = 2
    refuse: str | None = None

    def LoadUnit(self, name: str) -> str:
        if name != "gdnsd.service":
            raise DBusError(f"GDBus.Error:org.freedesktop.systemd1.NoSuchUnit: Unit {name} not found.")
        return UNIT_PATH

    def _job(self, method: str, name: str, mode: str) -> str:
        if self.refuse is not None:
            raise DBusError(f"g-dbus-error-name-quark: GDBus.Error:{self.refuse}")
        self.calls.append((method, name, mode))
        path = f"/org/freedesktop/systemd1/job/{len(self.calls)}"
        self.jobs[path] = FakeJob()
        return path

    def StopUnit(self, name: str, mode: str) -> str:
        return self._job("StopUnit", name, mode)

    def ReloadUnit(self, name: str, mode: str) -> str:
        return self._job("ReloadUnit", name, mode)


@dataclass
class FakeBus:
    manager: FakeManager
    probes: int = 0

    def get(self, bus_name: str, object_path: str | None = None) -> Any:
        assert bus_name == SYSTEMD
        if object_path == "/org/freedesktop/systemd1":
            return self.manager
        if object_path == UNIT_PATH:
            return self.manager.unit
        job = self.manager.jobs.get(object_path or "")
        if job is None:
            raise DBusError("GDBus.Error:org.freedesktop.DBus.Error.UnknownObject: Unknown object")
        self.probes += 1
        if self.probes >= self.manager.polls_until_done:
            del self.manager.jobs[object_path or ""]
            for key, value in self.manager.effect.items():
                setattr(self.manager.unit, key, value)
        return job


def make(unit: FakeUnit | None = None, **manager: Any) -> tuple[FakeBus, FakeManager]:
    fake = FakeManager(unit or FakeUnit(), {}, **manager)
    return FakeBus(fake), fake


def test_state_reads_the_unit_properties() -> None:
    bus, _ = make(FakeUnit(MainPID=4321))
    state = SystemdUnit(bus).state()
    assert state == UnitState("gdnsd.service", "active", "running", 4321, "success", "success")
    assert state.describe() == "gdnsd.service: active (running), MainPID 4321"


def test_an_unknown_unit_is_an_error_naming_it() -> None:
    bus, _ = make()
    with pytest.raises(SystemdUnitError, match=re.escape("systemd cannot load other.service: org.freedesktop.systemd1.NoSuchUnit")):
        SystemdUnit(bus, "other.service").state()


def test_replace_is_reloadunit_and_reports_the_new_main_pid() -> None:
    bus, manager = make(FakeUnit(MainPID=100), effect={"MainPID": 200, "ReloadResult": "success"})
    err = io.StringIO()
    assert unit_verbs.replace(SystemdUnit(bus), 30.0, err) == 0
    assert manager.calls == [("ReloadUnit", "gdnsd.service", "replace")]
    assert err.getvalue() == "info: systemd reloaded gdnsd.service: ReloadResult success, MainPID 100 -> 200\n"


def test_a_failed_reload_reports_systemds_reload_result() -> None:
    bus, _ = make(FakeUnit(MainPID=100), effect={"ReloadResult": "exit-code"})
    err = io.StringIO()
    assert unit_verbs.replace(SystemdUnit(bus), 30.0, err) == 1
    assert "ReloadResult exit-code, MainPID 100 -> 100, active (running)" in err.getvalue()
    assert "journalctl -u gdnsd.service" in err.getvalue()


def test_a_job_not_finished_by_the_deadline_is_a_failure() -> None:
    bus, _ = make(polls_until_done=10**9)
    err = io.StringIO()
    assert unit_verbs.replace(SystemdUnit(bus), 0.2, err) == 1
    assert "has not finished within 0.2 s" in err.getvalue()


def test_stop_is_stopunit_and_waits_for_the_unit_to_be_inactive() -> None:
    bus, manager = make(FakeUnit(MainPID=100), effect={"ActiveState": "inactive", "SubState": "dead", "MainPID": 0})
    err = io.StringIO()
    assert unit_verbs.stop(SystemdUnit(bus), 30.0, err) == 0
    assert manager.calls == [("StopUnit", "gdnsd.service", "replace")]
    assert err.getvalue() == (
        "info: systemd stopped gdnsd.service (was MainPID 100): inactive (dead), Result success\n"
    )


def test_a_refused_job_prints_what_systemd_said() -> None:
    bus, _ = make(refuse="org.freedesktop.DBus.Error.InteractiveAuthorizationRequired: Interactive authentication required.")
    err = io.StringIO()
    assert unit_verbs.stop(SystemdUnit(bus), 30.0, err) == 1
    assert err.getvalue() == (
        "error: systemd refused StopUnit gdnsd.service: org.freedesktop.DBus.Error."
        "InteractiveAuthorizationRequired: Interactive authentication required.\n"
    )


def test_status_prints_the_unit_then_the_daemons_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    bus, _ = make(FakeUnit(MainPID=4321))
    seen: list[Path] = []

    def daemon_status(cfgdir: Path, out: io.StringIO) -> int:
        seen.append(cfgdir)
        print("gdnsd is running at PID 4321", file=out)
        return 0

    monkeypatch.setattr(unit_verbs.initscript_verbs, "status", daemon_status)
    out = io.StringIO()
    assert unit_verbs.status(SystemdUnit(bus), Path("/etc/gdnsd"), out) == 0
    assert out.getvalue() == "gdnsd.service: active (running), MainPID 4321\ngdnsd is running at PID 4321\n"
    assert seen == [Path("/etc/gdnsd")]


# --- when a verb is routed to systemd --------------------------------------------------


@pytest.fixture
def booted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd_unit, "systemd_booted", lambda root=Path("/"): True)
    monkeypatch.setattr(systemd_unit, "in_unit_cgroup", lambda unit="", cgroup_file=Path(): False)


@pytest.mark.usefixtures("booted")
def test_routed_only_when_the_units_main_pid_is_this_configs_daemon() -> None:
    bus, _ = make(FakeUnit(MainPID=4321))
    unit = systemd_unit.unit_of_daemon(4321, bus)
    assert unit is not None and unit.name == "gdnsd.service"
    assert systemd_unit.unit_of_daemon(999, bus) is None  # another config's daemon
    assert systemd_unit.unit_of_daemon(None, bus) is None  # none running


@pytest.mark.usefixtures("booted")
def test_not_routed_when_the_unit_is_not_running() -> None:
    bus, _ = make(FakeUnit(ActiveState="failed", SubState="failed", MainPID=0))
    assert systemd_unit.unit_of_daemon(0, bus) is None


def test_not_routed_without_systemd_as_pid_1(tmp_path: Path) -> None:
    assert not systemd_unit.systemd_booted(tmp_path)
    (tmp_path / "run" / "systemd" / "system").mkdir(parents=True)
    assert systemd_unit.systemd_booted(tmp_path)


def test_inside_the_units_cgroup_systemd_is_running_us(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/gdnsd.service\n")
    assert systemd_unit.in_unit_cgroup("gdnsd.service", cgroup)
    cgroup.write_text("0::/user.slice/user-0.slice/session-1.scope\n")
    assert not systemd_unit.in_unit_cgroup("gdnsd.service", cgroup)
    cgroup.write_text("0::/system.slice/gdnsd.service.d-other.scope\n")
    assert not systemd_unit.in_unit_cgroup("gdnsd.service", cgroup)
