"""gdnsd 3.8.1's own test suite against this checkout: a drop-in passes the suite of the server it replaces.

The suite is gdnsd's Perl ``t/`` in its installcheck mode, with a runner
(``run.sh``) that starts each file in a network namespace of its own. It is
not ours to commit: it is looked for at ``$GDNSD_TESTSUITE``, else at
``../shared/gdnsd-testsuite`` beside the checkout, and run by
``dev/gdnsd-suite`` (a private /tmp, so two checkouts can run it at once).
Debian's own source package does not help on a machine without it: its
``orig.tar.xz`` is not served by the Debian mirror this project may use.

The whole suite runs once (four files at a time: a passing file takes about
a second, most of it the daemon starting), then each file is one test here,
so a failure names the file and its failed subtests. Every file must pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUITE = Path(os.environ.get("GDNSD_TESTSUITE", REPO.parent / "shared" / "gdnsd-testsuite"))

# A file whose daemon never answers, or a stats check retried for ~50 s, must not
# hold the run for long: a passing file takes a few seconds (the slowest, 053tcp_states,
# waits out a 10 s TCP timeout on purpose).
PER_FILE_TIMEOUT = 120



@dataclass(frozen=True)
class FileResult:
    """One test file's line in the runner's results, and the lines under it (its failed subtests)."""

    status: str
    passed: int
    planned: int
    text: str


_FILE_LINE = re.compile(r"^(\d\S*\.t)\s+(\S+)\s+(\d+)/(\d+)")


def _results(path: Path) -> dict[str, FileResult]:
    found: dict[str, FileResult] = {}
    name, head, lines = "", None, list[str]()

    def close() -> None:
        if head is not None:
            found[name] = FileResult(head[0], int(head[1]), int(head[2]), "\n".join(lines))

    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        match = _FILE_LINE.match(line)
        if match:
            close()
            name, head, lines = match[1], (match[2], match[3], match[4]), [line]
            continue
        lines.append(line)
    close()
    return found


def _suite_files() -> list[str]:
    if not (SUITE / "t").is_dir():
        return []
    return sorted(str(p.relative_to(SUITE / "t")) for p in (SUITE / "t").glob("[0-9]*/*.t"))


@pytest.fixture(scope="module")
def suite_results() -> dict[str, FileResult]:
    # Not under /tmp: the runner mounts a /tmp of its own, which would hide what it writes there.
    work = REPO / ".suite" / "pytest"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = work / "results.txt"
    env = {**os.environ, "GDNSD_TESTSUITE": str(SUITE), "WORK": str(work)}
    run = subprocess.run(
        [str(REPO / "dev" / "gdnsd-suite"), "-j", "4", "-t", str(PER_FILE_TIMEOUT), "-l", "pygdnsd", "-o", str(results)],
        env=env, capture_output=True, text=True, timeout=3600,
    )
    if not results.exists():
        pytest.fail(f"the suite's runner wrote no results (exit {run.returncode}):\n{run.stdout}\n{run.stderr}")
    return _results(results)


@pytest.mark.skipif(
    not (SUITE / "run.sh").exists(),
    reason=f"gdnsd's test suite is not on this machine (looked at {SUITE}; set GDNSD_TESTSUITE)",
)
@pytest.mark.parametrize("name", _suite_files() or ["(no suite)"])
def test_gdnsd_suite_file(name: str, suite_results: dict[str, FileResult]) -> None:
    result = suite_results.get(name)
    assert result is not None, f"{name}: the runner has no line for it"
    assert result.status == "PASS", result.text
