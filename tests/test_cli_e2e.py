"""``python -m pygdnsd ... start`` end to end: real config, zones and engine; dig answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import REPO, ServerProcess, free_port, prepare_config_dir, pygdnsd_python

EXAMPLES = REPO / "examples" / "gdnsd"
MAIN = REPO / "tests" / "data" / "diff" / "main"


def dig(port: int, *args: str) -> list[str]:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=2", "+tries=1", *args],
        capture_output=True, text=True, timeout=20, check=True,
    )
    return sorted(result.stdout.split())


def examples_with_placeholders(dest: Path) -> Path:
    """examples/gdnsd with its fixed port and run dirs replaced by the fixture's placeholders."""
    shutil.copytree(EXAMPLES, dest)
    config = dest / "config"
    text = config.read_text()
    text = text.replace("dns_port => 5353", "dns_port => @PORT@")
    text = text.replace("/tmp/pygdnsd-example/run", "@RUN_DIR@")
    text = text.replace("/tmp/pygdnsd-example/state", "@STATE_DIR@")
    assert "@PORT@" in text and "@RUN_DIR@" in text
    config.write_text(text)
    return dest


def test_examples_serve_udp_and_tcp_then_sigterm_exits_0(tmp_path: Path) -> None:
    source = examples_with_placeholders(tmp_path / "examples")
    server = ServerProcess("pygdnsd", source, tmp_path / "run")
    with server:
        assert dig(server.port, "www.example.com", "A") == ["192.0.2.10"]
        assert dig(server.port, "+tcp", "www.example.com", "AAAA") == ["2001:db8::10"]
        proc = server.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    assert server.stderr_text.count("DNS listeners started") == 1


def test_main_test_zones_answer(server_factory: Callable[[str, Path], ServerProcess]) -> None:
    server = server_factory("pygdnsd", MAIN)
    assert dig(server.port, "www.example.com", "A") == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert dig(server.port, "+tcp", "mail.example.com", "A") == ["192.0.2.25"]


def run_checkconf(config_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "service"))
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(config_dir), "checkconf"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def test_checkconf_ok_and_zone_error(tmp_path: Path) -> None:
    source = examples_with_placeholders(tmp_path / "examples")
    good = prepare_config_dir(source, tmp_path / "good", free_port())
    result = run_checkconf(good)
    assert result.returncode == 0, result.stderr
    bad = prepare_config_dir(source, tmp_path / "bad", free_port())
    zone = bad / "zones" / "example.com"
    zone.write_text(zone.read_text() + "broken  BOGUSTYPE 1\n")
    lines = zone.read_text().count("\n")
    result = run_checkconf(bad)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert f"{zone}:{lines}: " in errors[0]
