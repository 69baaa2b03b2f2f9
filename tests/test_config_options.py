"""pygdnsd's ``load_config`` accepts exactly the config dirs gdnsd 3.8.1's checkconf accepts.

Cases live in tests/data/config/{ok,bad}/: a ``NAME.conf`` file becomes the
``config`` file of a fresh config dir, a ``NAME/`` dir is copied whole (for
includes). The ok/bad folder records what gdnsd did when the case was written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, gdnsd_available
from pygdnsd.config.options import load_config
from pygdnsd.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"
CASES = sorted(
    (kind, path) for kind in ("ok", "bad") for path in (DATA / kind).iterdir() if path.name != ".keep"
)


def make_cfgdir(case: Path, tmp_path: Path) -> Path:
    cfgdir = tmp_path / "cfg"
    if case.is_dir():
        shutil.copytree(case, cfgdir)
    else:
        cfgdir.mkdir()
        shutil.copyfile(case, cfgdir / "config")
    (cfgdir / "zones").mkdir(exist_ok=True)
    return cfgdir


def ours_accepts(cfgdir: Path) -> bool:
    try:
        load_config(cfgdir)
    except ConfigError:
        return False
    return True


def gdnsd_accepts(cfgdir: Path) -> bool:
    result = subprocess.run(
        [str(REAL_GDNSD), "-c", str(cfgdir), "checkconf"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}/{p.name}" for k, p in CASES])
def test_ours_matches_recorded_verdict(kind: str, case: Path, tmp_path: Path) -> None:
    assert ours_accepts(make_cfgdir(case, tmp_path)) == (kind == "ok")


@pytest.mark.skipif(not gdnsd_available(), reason="reference gdnsd not installed")
@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}/{p.name}" for k, p in CASES])
def test_gdnsd_gives_recorded_verdict(kind: str, case: Path, tmp_path: Path) -> None:
    assert gdnsd_accepts(make_cfgdir(case, tmp_path)) == (kind == "ok")
