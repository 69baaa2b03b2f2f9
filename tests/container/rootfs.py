"""The container's Debian 12 root filesystem: built once with (mm)debootstrap, then cached.

The cache key is a hash of everything that shapes the tree (suite, mirror,
package list, our customisation), so changing the package list builds a new
tree and an unchanged one is reused across runs. A tree is published by an
atomic rename, and builders serialise on a lock file, so parallel test
processes neither build twice nor see half a tree. Containers boot it with
``--volatile=overlay``: the cached tree itself is never written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from container.host_tools import HostSetupError, ensure_host_tools

CACHE_DIR = Path(os.environ.get("PYGDNSD_CONTAINER_CACHE", "/var/cache/pygdnsd-tests"))

# Bump when customise() changes: the key must change with the tree's content.
LAYOUT_VERSION = 1

# systemd as PID 1 with a system bus, the Python stack our daemon uses (sd_notify
# through python3-systemd, D-Bus through pydbus/gi), and the tools tests poke with.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-systemd",
    "python3-dnslib",
    "python3-maxminddb",
    "python3-prometheus-client",
    "python3-pydbus",
    "python3-gi",
    "dnsutils",
    "procps",
    "iproute2",
)

# Units that only slow the boot or fail without a console/network in a container.
MASKED_UNITS = (
    "console-getty.service",
    "getty@.service",
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)

BUILD_ATTEMPTS = 3
BUILD_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class RootfsSpec:
    """What goes into the tree. ``extra_packages`` for tests that need more."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = BASE_PACKAGES
    extra_packages: tuple[str, ...] = ()

    def all_packages(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.packages) | set(self.extra_packages)))

    def key(self) -> str:
        described = {
            "layout": LAYOUT_VERSION,
            "suite": self.suite,
            "mirror": self.mirror,
            "packages": self.all_packages(),
            "masked": MASKED_UNITS,
        }
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
        return digest.hexdigest()[:16]


class RootfsBuildError(RuntimeError):
    """The tree could not be built; the message carries the end of the build log."""


def rootfs_path(spec: RootfsSpec, cache_dir: Path = CACHE_DIR) -> Path:
    return cache_dir / f"rootfs-{spec.key()}"


def is_complete(root: Path) -> bool:
    return (root / "lib/systemd/systemd").exists() and (root / "usr/bin/python3").exists()


def ensure_rootfs(spec: RootfsSpec = RootfsSpec(), cache_dir: Path = CACHE_DIR) -> Path:
    """The cached tree for ``spec``, building it first if no complete one exists."""
    root = rootfs_path(spec, cache_dir)
    if is_complete(root):
        return root
    tool = ensure_host_tools()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache_dir):
        if is_complete(root):  # another process built it while we waited
            return root
        for stale in cache_dir.glob(f"{root.name}.tmp-*"):  # from a killed build
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        _build(spec, tool, root, cache_dir / f"{root.name}.log")
        print(
            f"[container] built {root} with {tool} in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
    return root


@contextlib.contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    with open(cache_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def bootstrap_command(tool: str, spec: RootfsSpec, target: Path) -> list[str]:
    include = ",".join(spec.all_packages())
    return [tool, "--variant=minbase", f"--include={include}", spec.suite, str(target), spec.mirror]


def _build(spec: RootfsSpec, tool: str, root: Path, log_path: Path) -> None:
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    with open(log_path, "w") as log:
        log.write(json.dumps({"tool": tool, **asdict(spec)}) + "\n")
        log.flush()
        for attempt in range(1, BUILD_ATTEMPTS + 1):
            shutil.rmtree(staging, ignore_errors=True)
            try:
                status = subprocess.run(
                    bootstrap_command(tool, spec, staging),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=BUILD_TIMEOUT_SECONDS,
                ).returncode
            except subprocess.TimeoutExpired:
                status = -1
            if status == 0:
                break
            log.write(f"\n[container] attempt {attempt} of {tool} failed (status {status})\n")
            log.flush()
            if attempt == BUILD_ATTEMPTS:
                shutil.rmtree(staging, ignore_errors=True)
                raise RootfsBuildError(
                    f"{tool} failed {BUILD_ATTEMPTS} times; see {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(5)  # a flaky mirror should not fail CI
    try:
        customise(staging)
    except (OSError, HostSetupError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise RootfsBuildError(f"customising {staging} failed: {error}") from error
    shutil.rmtree(root, ignore_errors=True)  # an incomplete leftover of a crashed build
    staging.rename(root)


def customise(root: Path) -> None:
    """Make the bootstrapped tree boot quickly and cleanly as a container."""
    system = root / "etc/systemd/system"
    system.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        link = system / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    # nspawn gives each boot a machine id and sets the hostname to the machine name.
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").unlink(missing_ok=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(cannot read log: {error})"
