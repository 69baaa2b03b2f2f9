"""pytest fixtures for container tests; import them into a conftest or test module::

    from container.fixtures import container_rootfs, systemd_container  # noqa: F401

Without root the container tests cannot run: they fail with the reason when the
CI environment variable is set (CI runs as root, so that is a broken setup),
and are skipped otherwise (a developer's non-root run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.host_tools import root_problem
from container.rootfs import ensure_rootfs
from container.systemd_container import SystemdContainer

MARKER = "container: boots Debian 12 with systemd 252 as PID 1 in systemd-nspawn (needs root)"


def require_container_support() -> None:
    """Fail (in CI) or skip (elsewhere) when this process cannot run containers."""
    problem = root_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI is set, so this is not skipped)", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def container_rootfs() -> Path:
    """The cached Debian 12 tree (built on first use: about a minute)."""
    require_container_support()
    return ensure_rootfs()


@pytest.fixture
def systemd_container(
    container_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SystemdContainer]:
    """A freshly booted container (about a second from a warm cache), torn down after."""
    log_dir = tmp_path_factory.mktemp("container")
    with SystemdContainer(container_rootfs, log_dir=log_dir) as container:
        yield container
