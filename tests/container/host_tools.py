"""What the host needs before a container can be built and booted: root and two tools."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}

# mmdebstrap builds the rootfs in about half the time of debootstrap, and is one
# small package on top of what Debian 12 ships (apt, perl, python3).
BOOTSTRAP_TOOLS = ("mmdebstrap", "debootstrap")


class HostSetupError(RuntimeError):
    """The host cannot run containers; the message says what to install or fix."""


def running_as_root() -> bool:
    return os.geteuid() == 0


def root_problem() -> str | None:
    """Why container tests cannot run here (None when they can)."""
    if not running_as_root():
        return (
            "container tests need root (systemd-nspawn, cgroups, mounts); "
            "run pytest as root, e.g. `sudo .venv/bin/python -m pytest tests/container`"
        )
    return None


def apt_install(packages: Sequence[str]) -> None:
    """apt-get install ``packages`` (no recommends), updating the lists if the first try fails.

    systemd-container pins the host's systemd packages to its version: that may
    upgrade them to the current point release, harmless when PID 1 is not systemd.
    """
    env = {**os.environ, **APT_ENV}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    first = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if first.returncode == 0:
        return
    update = subprocess.run(
        ["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600
    )
    second = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if second.returncode != 0:
        raise HostSetupError(
            f"apt-get install {' '.join(packages)} failed (exit {second.returncode}):\n"
            f"{update.stdout[-2000:]}{update.stderr[-2000:]}"
            f"{second.stdout[-2000:]}{second.stderr[-2000:]}"
        )


def ensure_host_tools() -> str:
    """Make sure systemd-nspawn, nsenter and a bootstrap tool exist; return the tool's name.

    Uses mmdebstrap if present, else tries to install it, else falls back to
    debootstrap (installing that too if need be).
    """
    if not running_as_root():
        raise HostSetupError(root_problem() or "not root")
    essentials = [
        package
        for tool, package in (("systemd-nspawn", "systemd-container"), ("nsenter", "util-linux"))
        if shutil.which(tool) is None
    ]
    if essentials:
        apt_install(essentials)
    if shutil.which("mmdebstrap") is None:
        # Only an optimisation: debootstrap below does the same job, slower.
        with contextlib.suppress(HostSetupError):
            apt_install(["mmdebstrap"])
    for tool in BOOTSTRAP_TOOLS:
        if shutil.which(tool) is not None:
            return tool
    apt_install(["debootstrap"])
    return "debootstrap"
