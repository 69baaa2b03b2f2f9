"""status, stop and restart/replace of a daemon systemd runs: asked of systemd, reported as it says.

``cli.gdnsd`` routes a verb here when ``unit_of_daemon`` finds that the
daemon of the operator's config dir is gdnsd.service's main process.
reload-zones needs no routing: the daemon reloads in place, inside its unit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from pygdnsd.daemon import initscript_verbs
from pygdnsd.systemd.unit import (
    Bus,
    JobOutcome,
    SystemdUnit,
    SystemdUnitError,
    in_unit_cgroup,
    systemd_booted,
    unit_of_daemon,
)

EXIT_OK = 0
EXIT_FAILURE = 1


def managing_unit(cfgdir: Path, bus: Bus | None = None) -> SystemdUnit | None:
    """gdnsd.service if systemd runs the daemon of ``cfgdir``, else None (act directly)."""
    if not systemd_booted() or in_unit_cgroup():
        return None  # no systemd here, or systemd is running us (ExecReload, ExecStop)
    running = initscript_verbs.find_running(initscript_verbs.Where.of(cfgdir))
    return unit_of_daemon(running.pid if running is not None else None, bus)


def status(unit: SystemdUnit, cfgdir: Path, out: TextIO) -> int:
    """The unit's state and MainPID, then the daemon's own status line; LSB exit status."""
    try:
        print(unit.state().describe(), file=out)
    except SystemdUnitError as exc:
        print(f"{unit.name}: unknown ({exc})", file=out)
    return initscript_verbs.status(cfgdir, out)


def _finished(job: Callable[[float], JobOutcome], timeout: float, unfinished: str, err: TextIO) -> JobOutcome | None:
    """Run a systemd job; None, said on ``err``, if systemd refused it or it has not finished in time."""
    try:
        outcome = job(timeout)
    except SystemdUnitError as exc:
        print(f"error: {exc}", file=err)
        return None
    if not outcome.finished:
        print(f"error: {unfinished} within {timeout:g} s: {outcome.after.describe()}", file=err)
        return None
    return outcome


def stop(unit: SystemdUnit, timeout: float, err: TextIO) -> int:
    outcome = _finished(unit.stop, timeout, f"systemd has not stopped {unit.name}", err)
    if outcome is None:
        return EXIT_FAILURE
    after = outcome.after
    if after.running or after.main_pid:
        print(f"error: systemd did not stop {unit.name}: {after.describe()}, Result {after.result}", file=err)
        return EXIT_FAILURE
    print(
        f"info: systemd stopped {unit.name} (was MainPID {outcome.before.main_pid}): "
        f"{after.active} ({after.sub}), Result {after.result}",
        file=err,
    )
    return EXIT_OK


def replace(unit: SystemdUnit, timeout: float, err: TextIO) -> int:
    """ReloadUnit: the unit's ExecReload runs the overlapped replace inside the unit."""
    outcome = _finished(unit.reload, timeout, f"systemd's reload of {unit.name} has not finished", err)
    if outcome is None:
        return EXIT_FAILURE
    before, after = outcome.before, outcome.after
    pids = f"MainPID {before.main_pid} -> {after.main_pid}"
    if after.reload_result != "success" or not after.running:
        print(
            f"error: systemd reloaded {unit.name}: ReloadResult {after.reload_result}, {pids}, "
            f"{after.active} ({after.sub}) (the journal says why: journalctl -u {unit.name})",
            file=err,
        )
        return EXIT_FAILURE
    print(f"info: systemd reloaded {unit.name}: ReloadResult {after.reload_result}, {pids}", file=err)
    return EXIT_OK


ROUTED_ACTIONS = ("status", "stop", "replace", "restart", "condrestart", "try-restart")


def run(unit: SystemdUnit, action: str, cfgdir: Path, replace_timeout: float, out: TextIO, err: TextIO) -> int:
    """One of ROUTED_ACTIONS through systemd (the unit is running, so condrestart restarts)."""
    if action == "status":
        return status(unit, cfgdir, out)
    if action == "stop":
        return stop(unit, initscript_verbs.DEFAULT_TIMEOUT, err)
    return replace(unit, replace_timeout, err)
