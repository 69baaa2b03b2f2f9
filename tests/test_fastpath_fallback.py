"""Which UDP path serves, and the fallback to pure Python.

The daemon says in one log line which path answers UDP: the compiled fast
path, or pure Python because ``PYGDNSD_PURE=1`` or because the module is
not built. Every way serves the same bytes. ``pip install`` without a C
compiler still installs pygdnsd, which then serves pure Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, ServerProcess
from differential.wire import ask
from engine_support import query

DATA = REPO / "tests" / "data" / "diff" / "main"
COMPILED_LINE = "UDP answered by the compiled fast path ("
PURE_LINE = "UDP answered by the pure-Python path (PYGDNSD_PURE=1)"
MISSING_LINE = "UDP answered by the pure-Python path (the compiled fast path is not built: "


def source_copy(dest: Path) -> Path:
    """What ``pip install .`` builds from, without any module built in place."""
    for name in ("pyproject.toml", "setup.py", "README.rst"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "service", dest / "service", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
    return dest


def served(server: ServerProcess) -> list[bytes]:
    """Three times the same questions (the third comes from the compiled path's copy when it serves)."""
    answers = []
    for packet in (query("www.example.com", 1), query("WWW.Example.COM", 28, rd=False), query("nope.example.com", 1)):
        for _ in range(3):
            answer = ask(server.address, packet, tcp=False)
            assert answer is not None
            answers.append(answer)
    return answers


def one_process_config(dest: Path) -> Path:
    """The differential tests' main config served by one process (rotations then follow one counter)."""
    shutil.copytree(DATA, dest)
    config = (dest / "config").read_text()
    (dest / "config").write_text(config.replace("listen =>", "udp_threads => 1\n  tcp_threads => 1\n  listen =>"))
    return dest


def test_each_path_logs_once_and_serves_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    without_module = source_copy(tmp_path / "src") / "service"
    config = one_process_config(tmp_path / "config")
    ways = {
        COMPILED_LINE: {"PYGDNSD_PURE": "0"},
        PURE_LINE: {"PYGDNSD_PURE": "1"},
        MISSING_LINE: {"PYGDNSD_PURE": "", "PYTHONPATH": str(without_module)},
    }
    answers = {}
    for line, env in ways.items():
        with ServerProcess("pygdnsd", config, tmp_path / f"run-{len(answers)}", extra_env=env) as server:
            answers[line] = served(server)
            said = [text for text in server.stderr_text.splitlines() if "UDP answered by" in text]
            assert len(said) == 1 and line in said[0], server.stderr_text
    first, *others = answers.values()
    assert all(other == first for other in others)


def test_pip_install_without_a_compiler_installs_the_pure_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    source_copy(src)
    target = tmp_path / "target"
    env = dict(os.environ, CC=str(tmp_path / "no-such-compiler"), PIP_NO_INDEX="1")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--target", str(target), str(src)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    package = target / "pygdnsd"
    assert (package / "transport" / "fastpath.py").exists()
    assert not list(package.rglob("_fastpath*.so"))
    assert not list(package.rglob("*.c"))
    chosen = subprocess.run(
        [sys.executable, "-c",
         f"import sys; sys.path.insert(0, {str(target)!r}); from pygdnsd.transport import fastpath;"
         " print(fastpath.chosen().description)"],
        capture_output=True, text=True, env=dict(os.environ, PYGDNSD_PURE=""), timeout=60, check=True,
    )  # fmt: skip
    assert chosen.stdout.startswith("pure-Python path (the compiled fast path is not built"), chosen.stdout


@pytest.mark.parametrize("value", ["1", "yes"])
def test_pure_is_chosen_by_the_variable(value: str) -> None:
    from pygdnsd.transport import fastpath

    assert fastpath.choose({"PYGDNSD_PURE": value}).module is None
    assert fastpath.choose({"PYGDNSD_PURE": "0"}).module is not None
    assert fastpath.choose({}).module is not None
