"""Differential tests: pygdnsd must answer exactly like Debian's gdnsd 3.8.1.

The gdnsd-vs-gdnsd tests prove the harness itself (normaliser, probes,
server fixture): two reference daemons on the same config must agree on
every probe. The gdnsd-vs-pygdnsd tests are the acceptance criterion.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, ServerProcess
from differential.compare import differences, report
from differential.queries import all_probes

DATA = Path(__file__).resolve().parent.parent / "data" / "diff"
CONFIGS = ["main", "chain", "ttl"]


@pytest.fixture(scope="module", autouse=True)
def reference_server_installed() -> None:
    # dev/bootstrap installs Debian's gdnsd; without it these tests cannot mean anything.
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"


@pytest.fixture(scope="module", params=CONFIGS)
def reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = request.param
    with ServerProcess("gdnsd", DATA / config, tmp_path_factory.mktemp(f"ref-{config}")) as server:
        yield server


def test_query_set_is_large_and_mixed() -> None:
    probes = all_probes()
    assert len(probes) >= 500
    assert sum(p.tcp for p in probes) >= 100
    assert sum(not p.tcp for p in probes) >= 400


def test_two_gdnsd_instances_agree(reference: ServerProcess, tmp_path: Path) -> None:
    probes = all_probes()
    with ServerProcess("gdnsd", reference.source_dir, tmp_path / "second") as second:
        found = differences(reference.address, second.address, probes)
    assert not found, report(found, len(probes))


def test_pygdnsd_answers_like_gdnsd(reference: ServerProcess, tmp_path: Path) -> None:
    probes = all_probes()
    chain = reference.source_dir.name == "chain"
    with ServerProcess("pygdnsd", reference.source_dir, tmp_path / "ours") as ours:
        found = differences(reference.address, ours.address, probes, chain_regardless_of_case=chain)
    assert not found, report(found, len(probes))


def test_harness_notices_a_difference(tmp_path: Path) -> None:
    """Two configs that answer differently (chaos string, CNAME chasing) must be reported."""
    with ServerProcess("gdnsd", DATA / "main", tmp_path / "a") as a, \
            ServerProcess("gdnsd", DATA / "chain", tmp_path / "b") as b:
        found = differences(a.address, b.address, all_probes())
    text = "\n".join(found)
    assert "chaos says hi" in text
    assert "chain2.example.com" in text


@pytest.mark.parametrize("kind", ["gdnsd", "pygdnsd"])
def test_zone_inside_another_zone_is_refused(kind: str, tmp_path: Path) -> None:
    server = ServerProcess(kind, DATA / "subzone", tmp_path / kind, startup_timeout=10)
    with pytest.raises(RuntimeError, match="exited") as failure:
        server.start()
    # A crash is not a refusal: the operator must get a message naming the zones.
    assert "Traceback" not in str(failure.value)
    assert "example.com" in str(failure.value)
