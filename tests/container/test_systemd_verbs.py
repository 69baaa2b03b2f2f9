"""Issue 7 item 3 under systemd 252: root's `gdnsd status/restart/stop` go through systemd (D-Bus).

One container for the module: pygdnsd at Debian's paths, units/gdnsd.service,
a ``gdnsd`` user, /etc/gdnsd with one zone on 127.0.0.1:53 (the container's
private network). The tests run in file order on the one unit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from container.systemd_container import REPO, SystemdContainer

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]

UNIT = "gdnsd.service"
CONFIG_DIR = "/etc/gdnsd"
ZONE = "example.com"
CONFIG = "options => {\n  listen => [ 127.0.0.1 ]\n  dns_port => 53\n}\n"
ZONE_TEXT = (REPO / "examples" / "gdnsd" / "zones" / ZONE).read_text()
TIMEOUT = 120.0


def show(container: SystemdContainer, *props: str) -> dict[str, str]:
    return container.unit_properties(UNIT, *props)


def main_pid(container: SystemdContainer) -> int:
    return int(show(container, "MainPID")["MainPID"])


def dig(container: SystemdContainer) -> str:
    return container.dig(f"www.{ZONE}")


@pytest.fixture(scope="module")
def unit_container(container_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdContainer]:
    log_dir = tmp_path_factory.mktemp("systemd-verbs")
    with SystemdContainer(container_rootfs, log_dir=log_dir) as container:
        container.install_gdnsd(CONFIG, {ZONE: ZONE_TEXT}, [UNIT])
        started = container.run(["systemctl", "start", UNIT], timeout=TIMEOUT)
        assert started.returncode == 0, started.stderr + container.journal("-n", "40")
        yield container
        container.run(["systemctl", "stop", UNIT], timeout=30)


def test_status_shows_the_unit_its_main_pid_and_the_daemons_line(unit_container: SystemdContainer) -> None:
    container = unit_container
    pid = main_pid(container)
    done = container.run(["gdnsd", "-c", CONFIG_DIR, "status"], timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{UNIT}: active (running), MainPID {pid}",
        f"gdnsd is running at PID {pid}",
    ]


def test_restart_is_a_systemd_reload_and_the_new_daemon_is_in_the_units_cgroup(
    unit_container: SystemdContainer,
) -> None:
    container = unit_container
    old = main_pid(container)
    done = container.run(["gdnsd", "-c", CONFIG_DIR, "restart"], timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr + container.journal("-n", "40")
    new = main_pid(container)
    assert new != old
    assert done.stderr.strip().endswith(
        f"info: systemd reloaded {UNIT}: ReloadResult success, MainPID {old} -> {new}"
    ), done.stderr
    assert f"/system.slice/{UNIT}" in container.read_file(f"/proc/{new}/cgroup")
    state = show(container, "ActiveState", "SubState", "ReloadResult", "ControlGroup")
    assert (state["ActiveState"], state["SubState"], state["ReloadResult"]) == ("active", "running", "success")
    procs = container.read_file(f"/sys/fs/cgroup{state['ControlGroup']}/cgroup.procs").split()
    # Only the new generation: MainPID and its worker processes.
    assert {int(pid) for pid in procs} == container.generation(new)
    # systemd ran the reload: its journal shows the reload job, not a replace from outside.
    assert "Reloaded" in container.journal("-u", UNIT, "-n", "20", "-o", "cat")
    assert dig(container) == "192.0.2.10"


def test_replace_with_a_broken_zone_reports_systemds_reload_result(unit_container: SystemdContainer) -> None:
    container = unit_container
    old = main_pid(container)
    container.write_file(f"{CONFIG_DIR}/zones/{ZONE}", ZONE_TEXT + "broken line here\n")
    try:
        done = container.run(["gdnsd", "-c", CONFIG_DIR, "replace"], timeout=TIMEOUT)
    finally:
        container.write_file(f"{CONFIG_DIR}/zones/{ZONE}", ZONE_TEXT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: systemd reloaded {UNIT}: ReloadResult exit-code, MainPID {old} -> {old}" in done.stderr
    assert main_pid(container) == old
    assert dig(container) == "192.0.2.10"


def test_stop_stops_the_unit(unit_container: SystemdContainer) -> None:
    container = unit_container
    old = main_pid(container)
    done = container.run(["gdnsd", "-c", CONFIG_DIR, "stop"], timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"info: systemd stopped {UNIT} (was MainPID {old}): inactive (dead)" in done.stderr
    state = show(container, "ActiveState", "MainPID")
    assert (state["ActiveState"], state["MainPID"]) == ("inactive", "0")
    # Not running: the verbs act directly again (nothing to route).
    done = container.run(["gdnsd", "-c", CONFIG_DIR, "status"], timeout=TIMEOUT)
    assert (done.returncode, done.stdout) == (3, "gdnsd is not running\n")
