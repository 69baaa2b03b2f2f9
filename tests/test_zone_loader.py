"""The zones directory itself: absent means no zones (as gdnsd 3.8.1), unreadable is an error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REPO, pygdnsd_python
from pygdnsd.errors import ZoneError
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.settings import ZoneSettings


def test_missing_zones_directory_loads_no_zones(tmp_path: Path) -> None:
    assert load_zones(tmp_path / "zones", ZoneSettings()).zones == {}


def test_gdnsd_also_accepts_a_config_dir_without_zones(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(
        f"options => {{ listen => [127.0.0.1], run_dir => {tmp_path}/run, state_dir => {tmp_path}/state }}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "service"))
    for program in ([str(REAL_GDNSD)], [pygdnsd_python(), "-m", "pygdnsd"]):
        done = subprocess.run([*program, "-c", str(tmp_path), "checkconf"], capture_output=True, text=True, env=env)
        assert done.returncode == 0, (program, done.stderr)


def test_a_zones_path_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "zones").write_text("")
    with pytest.raises(ZoneError, match="cannot read zones directory"):
        load_zones(tmp_path / "zones", ZoneSettings())
