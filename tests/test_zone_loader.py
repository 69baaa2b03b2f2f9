"""The zones directory itself: absent means no zones (as gdnsd 3.8.1), unreadable is an error."""

from __future__ import annotations

import logging
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


# A zone without SOA whose records would earn warnings (TTLs that disagree, a TTL clamped,
# glue outside the zone), after comments and $TTL: the error comes alone, at the first record.
NO_SOA = (
    "; no SOA here\n$TTL 86400\n\n"
    "@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns1 300 A 192.0.2.2\nns2 9999999999 A 192.0.2.3\n"
    "glue.example.net. A 192.0.2.4\n"
)


def test_a_zone_without_soa_is_one_error_at_its_first_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "example.com").write_text(NO_SOA)
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"), pytest.raises(ZoneError) as got:
        load_zones(zones, ZoneSettings())
    assert str(got.value) == f"{zones / 'example.com'}:4: zone 'example.com.' has no SOA record"
    assert caplog.records == []


def test_checkconf_says_no_soa_in_one_file_line_problem_line(tmp_path: Path) -> None:
    """README.rst: checkconf exits 1 with one ``file:line: problem`` line; no warning comes before it."""
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "example.com").write_text(NO_SOA)
    (tmp_path / "config").write_text(
        f"options => {{ listen => [127.0.0.1], run_dir => {tmp_path}/run, state_dir => {tmp_path}/state }}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "service"))
    done = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(tmp_path), "checkconf"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if not line.startswith("info:")]
    assert problems == [f"error: {tmp_path / 'zones' / 'example.com'}:4: zone 'example.com.' has no SOA record"]
