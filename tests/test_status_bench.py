"""bench/'s scrape case runs: pygdnsd without and with http_listen scraped every second, side by side.

The figures are for a person to compare (2 s runs here are noise); this
checks the case does what it says: both kinds of run answered, every scrape
succeeded, and the summary line is printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, pygdnsd_python

pytestmark = pytest.mark.skipif(shutil.which("dnsperf") is None, reason="dnsperf is not installed (dev/bootstrap)")


def test_the_scrape_case_measures_both_and_every_scrape_succeeds(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            pygdnsd_python(), str(REPO / "bench" / "bench.py"), "scrape", "--seconds", "3", "--warmup", "0",
            "--py-threads", "1", "--out", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if re.match(r"scrape-[01] +\d+ +pygdnsd +1/1 +\d", line)]
    assert len(rows) == 4 and sum(line.startswith("scrape-1") for line in rows) == 2
    notes = re.findall(r"\[(\d+) scrapes, (\d+) failed\]", result.stdout)
    assert len(notes) == 2 and all(int(done) >= 2 and failed == "0" for done, failed in notes)
    assert re.search(r"scrape +pygdnsd +1/1 +cpu us/q without http_listen [\d.]+, scraped every second [\d.]+: [\d.]+x", result.stdout)
