"""What a new user meets first: README.rst's commands and the example config in examples/gdnsd."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REPO, pygdnsd_python
from daemon_support import env

README = REPO / "README.rst"
EXAMPLES = REPO / "examples" / "gdnsd"


def literal_block_lines(text: str) -> list[str]:
    """The lines of every ``::`` literal block (indented, after a paragraph ending in ``::``)."""
    lines = text.splitlines()
    found: list[str] = []
    in_block = False
    for index, line in enumerate(lines):
        if not in_block:
            in_block = line.rstrip().endswith("::")
            continue
        if line.strip() and not line.startswith(" "):
            in_block = lines[index].rstrip().endswith("::")
            continue
        if line.strip():
            found.append(line.strip())
    return found


def command_lines() -> list[list[str]]:
    """README's literal-block lines as argv lists (comments and blank lines left out)."""
    return [words for line in literal_block_lines(README.read_text()) if (words := shlex.split(line, comments=True))]


def names_checkout_file(word: str) -> bool:
    return "/" in word and not word.startswith("/") and (REPO / word).exists()


def test_readme_commands_on_checkout_files_run_this_checkout() -> None:
    # A bare "gdnsd" is Debian's reference on a bootstrapped machine: given
    # examples/gdnsd, it checks the files with the wrong program, silently.
    on_checkout = [argv for argv in command_lines() if any(names_checkout_file(w) for w in argv[1:])]
    assert on_checkout, "README shows no command on the example config"
    for argv in on_checkout:
        assert names_checkout_file(argv[0]), f"README runs {argv[0]!r} (not this checkout's) in: {shlex.join(argv)}"


def test_readme_checkconf_commands_succeed_without_warnings() -> None:
    checks = [argv for argv in command_lines() if "checkconf" in argv and names_checkout_file(argv[0])]
    assert [argv[0] for argv in checks] == ["dev/serve", ".venv/bin/gdnsd"]
    for argv in checks:
        if argv[0] == ".venv/bin/gdnsd" and not (REPO / argv[0]).exists():
            argv = [pygdnsd_python(), "-m", "pygdnsd", *argv[1:]]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env(), timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert "warning:" not in done.stderr, done.stderr


def test_gdnsd_synopses_name_every_option() -> None:
    from pygdnsd.cli import gdnsd

    synopses = [line for line in literal_block_lines(README.read_text()) if line.startswith("gdnsd [")]
    assert synopses
    usage_lines = gdnsd.USAGE.split("\n  -c ")[0]
    flags = set(re.findall(r"(?<![\w-])-(\w)", usage_lines))
    for synopsis in synopses:
        assert set(re.findall(r"(?<![\w-])-(\w)", synopsis)) == flags == set("cDlStRi"), synopsis


def checkconf(program: list[str], cfgdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*program, "-c", str(cfgdir), "checkconf"], capture_output=True, text=True, env=env(), timeout=120, check=False
    )


def test_example_config_checks_clean() -> None:
    done = checkconf([pygdnsd_python(), "-m", "pygdnsd"], EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith("info: ")] == []


@pytest.mark.skipif(not os.access(REAL_GDNSD, os.X_OK), reason="needs Debian's gdnsd 3.8.1")
def test_example_config_checks_clean_in_gdnsd_too() -> None:
    done = checkconf([str(REAL_GDNSD)], EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith("info: ")] == []
