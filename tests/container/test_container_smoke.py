"""The harness boots a real systemd 252, runs a Type=notify unit, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from container.systemd_container import (
    CONTAINER_REPO,
    PROPAGATE_DIR,
    REPO,
    ContainerError,
    SystemdContainer,
    mounts_mentioning,
)

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

NOTIFY_SCRIPT = """\
import time

import systemd.daemon

systemd.daemon.notify("READY=1\\nSTATUS=serving smoke")
time.sleep(600)
"""

UNIT = """\
[Unit]
Description=harness smoke test: Type=notify daemon

[Service]
Type=notify
NotifyAccess=all
ExecStart=/usr/bin/python3 {script}
TimeoutStartSec={timeout}
"""


def install_unit(container: SystemdContainer, name: str, script: str, timeout: int) -> None:
    script_path = f"/usr/local/lib/smoke/{name}.py"
    container.write_file(script_path, script)
    container.write_file(
        f"/etc/systemd/system/{name}.service", UNIT.format(script=script_path, timeout=timeout)
    )
    container.run(["systemctl", "daemon-reload"], check=True)


def test_pid1_is_systemd_252(systemd_container: SystemdContainer) -> None:
    assert systemd_container.boot_state in ("running", "degraded")
    assert systemd_container.run(["cat", "/proc/1/comm"], check=True).stdout.strip() == "systemd"
    version = systemd_container.run(["systemctl", "--version"], check=True).stdout
    assert version.startswith("systemd 252 ("), version
    assert systemd_container.read_file("/etc/debian_version").startswith("12.")


@pytest.mark.parametrize("unified_cgroup", [True, False], ids=["cgroup2", "host-layout"])
def test_notify_unit_starts_active_and_stops(
    container_rootfs: Path, tmp_path: Path, unified_cgroup: bool
) -> None:
    with SystemdContainer(
        container_rootfs, unified_cgroup=unified_cgroup, log_dir=tmp_path
    ) as container:
        expected_fs = "cgroup2fs" if unified_cgroup else "tmpfs"
        cgroup_fs = container.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup"], check=True)
        assert cgroup_fs.stdout.strip() == expected_fs
        check_notify_unit(container)


def check_notify_unit(container: SystemdContainer) -> None:
    install_unit(container, "smoke-notify", NOTIFY_SCRIPT, timeout=60)
    container.run(["systemctl", "start", "smoke-notify.service"], check=True)
    state = container.unit_properties(
        "smoke-notify.service",
        "ActiveState",
        "SubState",
        "Type",
        "NotifyAccess",
        "StatusText",
        "MainPID",
    )
    assert state["ActiveState"] == "active"
    assert state["SubState"] == "running"
    assert (state["Type"], state["NotifyAccess"]) == ("notify", "all")
    assert state["StatusText"] == "serving smoke"  # the notification reached PID 1
    main_pid = state["MainPID"]
    assert "Started smoke-notify.service" in container.journal("-u", "smoke-notify.service")
    assert container.run(["ps", "-p", main_pid, "-o", "args="]).stdout.startswith(
        "/usr/bin/python3 /usr/local/lib/smoke/"
    )

    container.run(["systemctl", "stop", "smoke-notify.service"], check=True)
    assert container.unit_properties("smoke-notify.service", "ActiveState")["ActiveState"] == "inactive"
    assert container.run(["ps", "-p", main_pid]).returncode != 0


def test_notify_unit_without_ready_fails_to_start(systemd_container: SystemdContainer) -> None:
    # The counterpart of the test above: start really waits for READY=1.
    install_unit(systemd_container, "smoke-silent", "import time\ntime.sleep(600)\n", timeout=2)
    started = systemd_container.run(["systemctl", "start", "smoke-silent.service"])
    assert started.returncode != 0
    state = systemd_container.unit_properties("smoke-silent.service", "ActiveState", "Result")
    assert state == {"ActiveState": "failed", "Result": "timeout"}


def test_repo_is_bound_read_only_and_importable(systemd_container: SystemdContainer) -> None:
    imported = systemd_container.run(
        [
            "python3",
            "-c",
            "import pygdnsd, dnslib, systemd.daemon, pydbus; "
            "print(pygdnsd.__file__, pygdnsd.__version__)",
        ],
        env={"PYTHONPATH": f"{CONTAINER_REPO}/service"},
        check=True,
    )
    import pygdnsd

    assert imported.stdout.split() == [
        f"{CONTAINER_REPO}/service/pygdnsd/__init__.py",
        pygdnsd.__version__,
    ]
    assert systemd_container.run(["touch", f"{CONTAINER_REPO}/written-by-container"]).returncode
    assert not (REPO / "written-by-container").exists()


def test_copy_in_file_and_tree(systemd_container: SystemdContainer, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "zone").write_text("example.com. 86400 SOA a b 1 2 3 4 5\n")
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho tool ran\n")
    script.chmod(0o755)

    systemd_container.copy_in(tree, "/etc/smoke")
    systemd_container.copy_in(script, "/usr/local/bin/smoke-tool")

    assert systemd_container.read_file("/etc/smoke/sub/zone").startswith("example.com.")
    assert systemd_container.run(["smoke-tool"], check=True).stdout == "tool ran\n"


def test_network_is_private_loopback_only(systemd_container: SystemdContainer) -> None:
    links = systemd_container.run(["ip", "-o", "link", "show"], check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def assert_nothing_left(container: SystemdContainer, nspawn_pid: int, pid1: int) -> None:
    for pid in (nspawn_pid, pid1):
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} survived"
    for hierarchy in ("systemd", "unified", ""):
        assert not Path("/sys/fs/cgroup", hierarchy, container.machine).exists()
    assert mounts_mentioning(container.machine) == []
    assert not (PROPAGATE_DIR / container.machine).exists()


def test_shutdown_is_clean_and_cache_untouched(container_rootfs: Path) -> None:
    container = SystemdContainer(container_rootfs)
    with container:
        assert container.nspawn is not None
        nspawn_pid, pid1 = container.nspawn.pid, container.pid1
        container.write_file("/etc/smoke-marker", "written inside\n")
        container.run(["systemd-run", "--unit=smoke-sleeper", "sleep", "600"], check=True)
    assert container.exit_status == 0  # a poweroff, not a kill
    assert_nothing_left(container, nspawn_pid, pid1)
    assert not (container_rootfs / "etc/smoke-marker").exists()
    assert not container.log_dir.exists()  # own logs are dropped after a clean run


def test_teardown_runs_when_the_test_body_fails(container_rootfs: Path) -> None:
    container = SystemdContainer(container_rootfs)
    with pytest.raises(ZeroDivisionError), container:
        assert container.nspawn is not None
        nspawn_pid, pid1 = container.nspawn.pid, container.pid1
        _ = 1 / 0
    assert_nothing_left(container, nspawn_pid, pid1)
    with pytest.raises(ContainerError, match="not booted"):
        container.run(["true"])


def test_two_containers_share_the_cached_tree(container_rootfs: Path) -> None:
    with SystemdContainer(container_rootfs) as first, SystemdContainer(container_rootfs) as second:
        first.write_file("/etc/smoke-marker", "first\n")
        assert second.run(["test", "-e", "/etc/smoke-marker"]).returncode == 1
        hostnames = {c.run(["hostname"], check=True).stdout.strip() for c in (first, second)}
        assert hostnames == {first.machine, second.machine}
    assert (first.exit_status, second.exit_status) == (0, 0)


# The sandboxing of Debian's gdnsd.service (3.8.1), around a daemon that runs as
# an unprivileged user from the bound repo and binds port 53: what the replace
# tests will need to work inside the container.
SANDBOXED_UNIT = f"""\
[Service]
Type=notify
NotifyAccess=all
ExecStart=/usr/bin/python3 /usr/local/lib/smoke/sandboxed.py
UMask=0022
User=gdnsd
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
RuntimeDirectory=gdnsd
RuntimeDirectoryMode=0700
OOMScoreAdjust=-900
Nice=-11
LimitMEMLOCK=infinity
NoNewPrivileges=yes
SecureBits=noroot noroot-locked no-setuid-fixup no-setuid-fixup-locked
MountFlags=slave
DevicePolicy=closed
PrivateDevices=true
PrivateTmp=true
ProtectSystem=full
ProtectHome=true
Environment=PYTHONPATH={CONTAINER_REPO}/service
TimeoutStartSec=30
"""

SANDBOXED_SCRIPT = """\
import os, socket, time

import pygdnsd
import systemd.daemon

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 53))
systemd.daemon.notify(f"READY=1\\nSTATUS=uid={os.getuid()} port=53 {pygdnsd.__file__}")
time.sleep(600)
"""


def test_unit_sandboxed_like_debian_gdnsd_runs_from_the_repo(
    systemd_container: SystemdContainer,
) -> None:
    systemd_container.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "gdnsd"],
        check=True,
    )
    uid = systemd_container.run(["id", "-u", "gdnsd"], check=True).stdout.strip()
    systemd_container.write_file("/usr/local/lib/smoke/sandboxed.py", SANDBOXED_SCRIPT)
    systemd_container.write_file("/etc/systemd/system/smoke-sandboxed.service", SANDBOXED_UNIT)
    systemd_container.run(["systemctl", "daemon-reload"], check=True)
    systemd_container.run(["systemctl", "start", "smoke-sandboxed.service"], check=True)
    status = systemd_container.unit_properties("smoke-sandboxed.service", "StatusText")["StatusText"]
    assert status == f"uid={uid} port=53 {CONTAINER_REPO}/service/pygdnsd/__init__.py"
    sockets = systemd_container.run(["ss", "-Hlunp", "sport = :53"], check=True).stdout
    assert "127.0.0.1:53" in sockets
    systemd_container.run(["systemctl", "stop", "smoke-sandboxed.service"], check=True)


def test_pygdnsd_commands_run_the_bound_repo(systemd_container: SystemdContainer) -> None:
    systemd_container.install_pygdnsd_commands()
    systemd_container.copy_in(REPO / "examples" / "gdnsd", "/etc/gdnsd")
    assert systemd_container.run(["which", "gdnsd", "gdnsdctl"]).stdout.split() == [
        "/usr/sbin/gdnsd",
        "/usr/bin/gdnsdctl",
    ]
    checked = systemd_container.run(["gdnsd", "-c", "/etc/gdnsd", "checkconf"])
    assert checked.returncode == 0, checked.stderr
    # A missing config dir is fine (gdnsd 3.8.1 too: defaults, no zones); a bad zone is not.
    systemd_container.write_file("/etc/gdnsd-broken/zones/example.com", "@ SOA ns1 hm 1 2 3 4 5\n@ BOGUS x\n")
    broken = systemd_container.run(["gdnsd", "-c", "/etc/gdnsd-broken", "checkconf"])
    assert broken.returncode != 0
    assert "/etc/gdnsd-broken/zones/example.com:2:" in broken.stderr
