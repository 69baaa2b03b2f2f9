"""The Debian package: it builds on Debian 12, lintian finds no errors, and it works installed.

The container test installs the .deb into a freshly booted Debian 12 with
systemd 252 as PID 1 (the project's systemd-nspawn harness, private network:
everything the package depends on is already in the harness's rootfs), then
checks what an operator relies on: the service is enabled and serving on port
53 as user gdnsd with only CAP_NET_BIND_SERVICE; an upgrade reloads the
service (the overlapped replace) instead of stopping it; a purge leaves no
process and removes the package's files and configuration.

Building needs root the first time (apt-get build-dep), as do containers.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from container.background_load import BackgroundLoad
from container.fixtures import require_container_support
from container.host_tools import apt_install
from container.rootfs import RootfsSpec, ensure_rootfs
from container.systemd_container import SystemdContainer
from loadgen import LoadSpec

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "packaging" / "debian" / "build-deb"
UPGRADE_VERSION = "0.1.0+upgrade1"
CAP_NET_BIND_SERVICE = 1 << 10

ZONE = """\
$TTL 300
@    SOA ns1 hostmaster 1 7200 1800 259200 900
@    NS  ns1
ns1  A   192.0.2.53
www  A   192.0.2.80
"""


# Runs inside the container (Debian's python3, no dnslib needed): one UDP
# query for www.example.test A at a time, each waited for up to 2 s, until the
# stop file appears (or 180 s pass); prints "sent answered lost".
QUERY_LOOP = """\
import os, socket, struct, sys, time

stop, deadline = sys.argv[1], time.monotonic() + 180
qname = b"".join(bytes([len(p)]) + p for p in b"www.example.test".split(b".")) + b"\\0"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2.0)
sock.connect(("127.0.0.1", 53))
sent = answered = lost = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    qid = sent & 0xFFFF
    sock.send(struct.pack(">6H", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">2H", 1, 1))
    sent += 1
    try:
        while sock.recv(4096)[:2] != struct.pack(">H", qid):
            pass
        answered += 1
    except OSError:
        lost += 1
    time.sleep(0.01)
print(sent, answered, lost)
"""


@dataclass(frozen=True)
class BuiltDebs:
    first: Path
    upgrade: Path


def build(out_dir: Path, *extra: str) -> Path:
    result = subprocess.run(
        [str(BUILD_DEB), "--install-deps", *extra, str(out_dir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"build-deb failed:\n{result.stdout}\n{result.stderr}"
    debs = [Path(line) for line in result.stdout.split() if line.endswith(".deb")]
    assert len(debs) == 1, result.stdout
    return debs[0]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltDebs]:
    """The package as built from this tree, and the same rebuilt as a newer version."""
    require_container_support()  # root, for apt-get build-dep
    first = build(tmp_path_factory.mktemp("deb"))
    upgrade = build(tmp_path_factory.mktemp("deb-upgrade"), "--version", UPGRADE_VERSION)
    yield BuiltDebs(first, upgrade)


def deb_field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_build_names_and_versions(debs: BuiltDebs) -> None:
    # Architecture-specific: the package ships the compiled UDP fast path.
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(rf"pygdnsd_[0-9][^_]*_{arch}\.deb", debs.first.name)
    assert debs.upgrade.name == f"pygdnsd_{UPGRADE_VERSION}_{arch}.deb"
    assert deb_field(debs.first, "Architecture") == arch
    compared = subprocess.run(
        [
            "dpkg",
            "--compare-versions",
            deb_field(debs.upgrade, "Version"),
            "gt",
            deb_field(debs.first, "Version"),
        ]
    )
    assert compared.returncode == 0


def test_control_fields(debs: BuiltDebs) -> None:
    depends = {dep.strip().split()[0] for dep in deb_field(debs.first, "Depends").split(",")}
    assert {
        "python3-dnslib", "python3-maxminddb", "python3-prometheus-client", "python3-systemd", "python3-pydbus",
        "python3-gi", "adduser",
    } <= (
        depends
    )
    # libc6: the compiled module's only library (dpkg-shlibdeps).
    assert all(dep.startswith(("python3", "adduser", "libc6")) for dep in depends), depends
    for field in ("Conflicts", "Replaces"):
        assert deb_field(debs.first, field) == "gdnsd"
    assert deb_field(debs.first, "Provides").split()[0] == "gdnsd"


def test_contents(debs: BuiltDebs) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(debs.first)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for path in (
        "/usr/sbin/gdnsd",
        "/usr/bin/gdnsdctl",
        "/lib/systemd/system/gdnsd.service",
        "/etc/gdnsd/config",
        "/etc/gdnsd/zones/",
        "/usr/share/doc/pygdnsd/README.rst.gz",
        "/usr/share/man/man8/gdnsd.8.gz",
        "/usr/share/man/man8/gdnsdctl.8.gz",
        "/usr/lib/python3/dist-packages/pygdnsd/__init__.py",
    ):
        assert path in paths, path
    # The compiled UDP fast path, built for Debian's python3.
    module = re.compile(r"/usr/lib/python3/dist-packages/pygdnsd/transport/_fastpath\.cpython-3\d+-.*\.so")
    assert len([path for path in paths if module.fullmatch(path)]) == 1, sorted(p for p in paths if "transport" in p)
    if (REPO / "units" / "gdnsd.socket").exists():
        assert "/lib/systemd/system/gdnsd.socket" in paths
    assert not [path for path in paths if "__pycache__" in path or path.endswith(".pyc")]
    unit = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(debs.first)], capture_output=True, check=True
    ).stdout
    assert (REPO / "units" / "gdnsd.service").read_bytes() in unit


def test_lintian_finds_no_errors(debs: BuiltDebs) -> None:
    if subprocess.run(["which", "lintian"], capture_output=True).returncode != 0:
        apt_install(["lintian"])
    result = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(debs.first)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


# --- installed into a freshly booted Debian 12 ------------------------------------


def apt(container: SystemdContainer, *args: str) -> subprocess.CompletedProcess[str]:
    return container.run(
        ["apt-get", "-y", "-q", "--no-install-recommends", *args],
        env={"DEBIAN_FRONTEND": "noninteractive"},
        # Past the unit's TimeoutStartSec (300 s), so a start that never gets
        # READY=1 fails in systemd with its own message first.
        timeout=360,
    )


def unit_properties(container: SystemdContainer, *names: str) -> dict[str, str]:
    out = container.run(
        ["systemctl", "show", "gdnsd.service", *(f"--property={name}" for name in names)],
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def dig(container: SystemdContainer, name: str) -> str:
    answer = container.run(
        ["dig", "@127.0.0.1", "-p", "53", "+tries=2", "+time=2", "+short", name, "A"],
        timeout=30,
    )
    return answer.stdout.strip()


def proc_status(container: SystemdContainer, pid: str) -> dict[str, str]:
    text = container.read_file(f"/proc/{pid}/status")
    return {
        key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())
    }


def journal_lines(container: SystemdContainer) -> list[str]:
    return container.journal("-u", "gdnsd.service", "-o", "cat").splitlines()


def test_install_serve_upgrade_purge(debs: BuiltDebs, systemd_container: SystemdContainer) -> None:
    c = systemd_container
    for deb in (debs.first, debs.upgrade):
        c.copy_in(deb, f"/root/{deb.name}")
    # The operator's zone is there before the package, as on a host migrating
    # from Debian's gdnsd; the package must keep it.
    c.write_file("/etc/gdnsd/zones/example.test", ZONE)

    installed = apt(c, "install", f"/root/{debs.first.name}")
    assert installed.returncode == 0, installed.stdout + installed.stderr

    # A fresh install enables and starts the service (Debian's convention);
    # enable --now is what an operator who disabled it would run.
    c.run(["systemctl", "enable", "--now", "gdnsd.service"], check=True)
    props = unit_properties(c, "ActiveState", "UnitFileState", "MainPID", "User")
    assert props["ActiveState"] == "active", "\n".join(journal_lines(c))
    assert props["UnitFileState"] == "enabled"
    assert dig(c, "www.example.test") == "192.0.2.80"
    # The package's compiled UDP fast path loads and serves.
    assert any("UDP answered by the compiled fast path" in line for line in journal_lines(c)), journal_lines(c)

    # The daemon: user gdnsd, a system account, with nothing but CAP_NET_BIND_SERVICE.
    passwd = c.run(["getent", "passwd", "gdnsd"], check=True).stdout.strip().split(":")
    uid, shell = passwd[2], passwd[6]
    assert int(uid) < 1000 and shell in ("/usr/sbin/nologin", "/bin/false")
    main_pid = props["MainPID"]
    status = proc_status(c, main_pid)
    assert status["Uid"].split() == [uid] * 4
    assert status["Gid"].split()[0] == c.run(["id", "-g", "gdnsd"]).stdout.strip()
    for capability_set in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[capability_set], 16) == CAP_NET_BIND_SERVICE, capability_set
    assert c.run(["gdnsd", "checkconf"]).returncode == 0

    # Upgrade: the postinst reloads (the overlapped replace), never stops,
    # and every query sent meanwhile is answered.
    before = len(journal_lines(c))
    c.write_file("/root/query_loop.py", QUERY_LOOP)
    load = subprocess.Popen(
        c.command(["python3", "/root/query_loop.py", "/run/stop-query-loop"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        upgraded = apt(c, "install", f"/root/{debs.upgrade.name}")
        c.write_file("/run/stop-query-loop", "")
        load_out, load_err = load.communicate(timeout=30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait(timeout=10)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    sent, answered, lost = (int(n) for n in load_out.split())
    assert sent >= 10 and lost == 0 and answered == sent, (load_out, load_err)
    during = journal_lines(c)[before:]
    assert any(line.startswith("Reloading gdnsd") for line in during), during
    assert not any(line.startswith(("Stopping gdnsd", "Stopped gdnsd")) for line in during)
    after = unit_properties(c, "ActiveState", "MainPID", "ReloadResult")
    assert after["ActiveState"] == "active"
    assert dig(c, "www.example.test") == "192.0.2.80"
    # The upgrade replaced the daemon: a new process from the new package serves.
    assert any(line.startswith("Reloaded gdnsd") for line in during), during
    assert after["ReloadResult"] == "success"
    assert after["MainPID"] != main_pid
    assert "the overlapped replace (systemctl reload gdnsd) failed" not in upgraded.stderr

    # Purge: no process, no package files, no configuration; the operator's
    # zone and the system account stay.
    purged = apt(c, "purge", "pygdnsd")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert c.run(["pgrep", "-u", "gdnsd"]).returncode == 1
    assert unit_properties(c, "LoadState")["LoadState"] == "not-found"
    for path in (
        "/usr/sbin/gdnsd",
        "/usr/bin/gdnsdctl",
        "/lib/systemd/system/gdnsd.service",
        "/etc/systemd/system/multi-user.target.wants/gdnsd.service",
        "/etc/gdnsd/config",
        "/usr/lib/python3/dist-packages/pygdnsd",
    ):
        assert c.run(["test", "-e", path]).returncode == 1, f"{path} survived the purge"
    assert c.read_file("/etc/gdnsd/zones/example.test") == ZONE
    assert c.run(["getent", "passwd", "gdnsd"]).returncode == 0
    assert c.run(["ss", "-Hlun", "sport = :53"]).stdout.strip() == ""
    assert "192.0.2.80" not in dig(c, "www.example.test")
    assert os.path.exists(debs.first)  # the host's build output is untouched


# --- switching a host from Debian's gdnsd to pygdnsd and back, serving all along --------

# What Debian's gdnsd 3.8.1 links against, in the container's tree (no network inside).
GDNSD_LIBRARIES = ("libev4", "libmaxminddb0", "libsodium23", "libunwind8", "liburcu8")
SWITCH_QPS = 5000.0
SWITCH_TCP_RATE = 100.0
SWITCH_LOAD_SECONDS = 45.0  # the two switches take seconds; the rest is load around them


@pytest.fixture(scope="module")
def debian_gdnsd_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's gdnsd 3.8.1 package: apt's cache on this host (dev/bootstrap installed it), else downloaded."""
    cached = sorted(Path("/var/cache/apt/archives").glob("gdnsd_3.8.1-*_amd64.deb"))
    if cached:
        return cached[-1]
    out = tmp_path_factory.mktemp("gdnsd-deb")
    subprocess.run(["apt-get", "download", "gdnsd"], cwd=out, check=True, capture_output=True, timeout=300)
    found = sorted(out.glob("gdnsd_3.8.1-*.deb"))
    assert found, "apt-get download gdnsd brought no gdnsd 3.8.1"
    return found[-1]


@pytest.fixture
def gdnsd_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdContainer]:
    """A freshly booted Debian 12 whose tree has gdnsd 3.8.1's libraries (but not gdnsd)."""
    require_container_support()
    rootfs = ensure_rootfs(RootfsSpec(extra_packages=GDNSD_LIBRARIES))
    with SystemdContainer(rootfs, log_dir=tmp_path_factory.mktemp("gdnsd-host")) as container:
        yield container


@dataclass(frozen=True)
class Serving:
    main_pid: str
    program: str  # what /proc/MAINPID/exe points to
    cgroup_programs: frozenset[str]  # the same for every process in the unit's cgroup


def serving(c: SystemdContainer) -> Serving:
    props = unit_properties(c, "ActiveState", "MainPID", "ControlGroup")
    assert props["ActiveState"] == "active", "\n".join(journal_lines(c))
    programs = set()
    for pid in c.read_file(f"/sys/fs/cgroup{props['ControlGroup']}/cgroup.procs").split():
        link = c.run(["readlink", f"/proc/{pid}/exe"]).stdout.strip()
        if link:  # a process that exited meanwhile has none
            programs.add(link)
    exe = c.run(["readlink", f"/proc/{props['MainPID']}/exe"], check=True).stdout.strip()
    return Serving(props["MainPID"], exe, frozenset(programs))


def is_pygdnsd(program: str) -> bool:
    return program.startswith("/usr/bin/python3")


def test_switch_from_debian_gdnsd_to_pygdnsd_and_back_loses_nothing(
    debs: BuiltDebs, debian_gdnsd_deb: Path, gdnsd_host: SystemdContainer
) -> None:
    c = gdnsd_host
    c.copy_in(debs.first, f"/root/{debs.first.name}")
    c.copy_in(debian_gdnsd_deb, f"/root/{debian_gdnsd_deb.name}")
    c.write_file("/etc/gdnsd/zones/example.test", ZONE)

    # The starting point: Debian's gdnsd package, its service started by its postinst.
    installed = apt(c, "install", f"/root/{debian_gdnsd_deb.name}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    first = serving(c)
    assert first.program == "/usr/sbin/gdnsd", first
    assert dig(c, "www.example.test") == "192.0.2.80"

    spec = LoadSpec(qname="www.example.test", qps=SWITCH_QPS, tcp_rate=SWITCH_TCP_RATE,
                    duration=SWITCH_LOAD_SECONDS, grace=2.0)
    with BackgroundLoad(c, spec) as load:
        load.wait_until_served()

        # To pygdnsd: apt replaces the package; our postinst reloads the serving unit.
        began = time.monotonic()
        switched = apt(c, "install", f"/root/{debs.first.name}")
        to_pygdnsd = time.monotonic() - began
        assert switched.returncode == 0, switched.stdout + switched.stderr
        ours = serving(c)
        assert is_pygdnsd(ours.program) and ours.main_pid != first.main_pid, ours
        assert all(is_pygdnsd(program) for program in ours.cgroup_programs), ours  # gdnsd 3.8.1 is gone
        assert unit_properties(c, "ReloadResult")["ReloadResult"] == "success"
        # Debian's gdnsd postrm tried to delete the account the daemon still ran as.
        assert c.run(["getent", "passwd", "gdnsd"]).returncode == 0
        load.wait_until_served()

        # And back: apt replaces pygdnsd by Debian's package; its postinst reloads
        # (gdnsdctl replace) when it had been installed before, else the operator does.
        began = time.monotonic()
        back = apt(c, "install", f"/root/{debian_gdnsd_deb.name}")
        assert back.returncode == 0, back.stdout + back.stderr
        reloaded_by_postinst = not is_pygdnsd(serving(c).program)
        if not reloaded_by_postinst:
            c.run(["systemctl", "reload", "gdnsd.service"], check=True, timeout=360)
        to_gdnsd = time.monotonic() - began
        theirs = serving(c)
        assert theirs.program == "/usr/sbin/gdnsd" and theirs.main_pid != ours.main_pid, theirs
        assert theirs.cgroup_programs == {"/usr/sbin/gdnsd"}, theirs  # no pygdnsd process left
        assert unit_properties(c, "ReloadResult")["ReloadResult"] == "success"
        load.wait_until_served()
        outcome = load.wait()

    print(
        f"\nswitch to pygdnsd (apt-get install, postinst reload): {to_pygdnsd:.1f} s; back to gdnsd "
        f"({'its postinst' if reloaded_by_postinst else 'systemctl reload'}): {to_gdnsd:.1f} s; "
        f"{outcome.result.summary()}"
    )
    assert outcome.result.clean, outcome.result.summary()
    assert outcome.result.udp_sent >= 0.9 * SWITCH_QPS * SWITCH_LOAD_SECONDS
    stats = c.gdnsd_stats()  # gdnsd 3.8.1 counting every generation's answers, ours among them
    assert stats["udp"]["reqs"] >= outcome.result.udp_answered
    assert stats["tcp"]["reqs"] >= outcome.result.tcp_answered
    assert dig(c, "www.example.test") == "192.0.2.80"
