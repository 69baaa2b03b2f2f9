"""Container fixtures (for installing the .deb) and the ``container`` marker."""

from __future__ import annotations

import pytest

from container.fixtures import MARKER, container_rootfs, systemd_container

__all__ = ["container_rootfs", "systemd_container"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
