"""tests/loadgen.py: its wire format, and what it measures against Debian's real gdnsd."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, ServerProcess, free_port, gdnsd_available, one_zone_source
from loadgen import (
    LoadOutcome,
    LoadResult,
    LoadSpec,
    answer_ok,
    encode_name,
    query,
    question,
    run_argv,
    run_load,
)

needs_gdnsd = pytest.mark.skipif(not gdnsd_available(), reason="Debian's gdnsd is not installed")

ZONE = """\
@    SOA ns1 hostmaster 1 7200 1800 259200 900
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.2
"""


@pytest.fixture
def config_source(tmp_path: Path) -> Path:
    return one_zone_source(tmp_path / "source", ZONE)


def test_wire_format() -> None:
    assert encode_name("www.Example.com.") == b"\x03www\x07Example\x03com\x00"
    assert encode_name(".") == b"\x00"
    q = question("a.b", 28)
    assert q == b"\x01a\x01b\x00\x00\x1c\x00\x01"
    packet = query(0xBEEF, q)
    assert packet[:12] == struct.pack("!HHHHHH", 0xBEEF, 0, 1, 0, 0, 0)
    answer = struct.pack("!HHHHHH", 0xBEEF, 0x8400, 1, 1, 0, 0) + q.upper() + b"rest"
    assert answer_ok(answer, 0xBEEF, q, 0)
    assert not answer_ok(answer, 0xBEEE, q, 0)  # wrong ID
    assert not answer_ok(answer, 0xBEEF, q, 3)  # wrong rcode
    assert not answer_ok(packet, 0xBEEF, q, 0)  # QR clear: our own query reflected
    assert not answer_ok(answer[:12] + b"\x01c\x01b\x00\x00\x1c\x00\x01", 0xBEEF, q, 0)
    assert not answer_ok(answer[:11], 0xBEEF, q, 0)


@pytest.mark.parametrize("host", ["192.0.2.1", "8.8.8.8", "2001:db8::1"])
def test_only_loopback_targets(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoadSpec(host=host)


def test_no_server_means_everything_lost_or_failed() -> None:
    port = free_port()
    result = run_load(LoadSpec(port=port, qps=500, tcp_rate=20, duration=0.5, grace=0.2))
    assert result.udp_sent > 0 and result.udp_lost == result.udp_sent
    assert result.udp_answered == 0 and len(result.udp_loss_times) == result.udp_sent
    assert result.tcp_sent > 0 and result.tcp_failed == result.tcp_sent
    assert result.tcp_errors == {"refused": result.tcp_sent}
    assert not result.clean


def test_counts_into_a_tally_the_caller_holds() -> None:
    tally = LoadResult()
    assert run_load(LoadSpec(port=free_port(), qps=100, duration=0.2, grace=0.1), tally) is tally
    assert tally.udp_sent > 0 and tally.udp_lost == tally.udp_sent


def gdnsd(source: Path, work: Path) -> ServerProcess:
    """Debian's gdnsd on a copy of ``source``; ``with`` starts it and kills it by PID."""
    return ServerProcess("gdnsd", source, work)


@needs_gdnsd
def test_zero_loss_against_real_gdnsd_at_5k_qps(config_source: Path, tmp_path: Path) -> None:
    with gdnsd(config_source, tmp_path / "gdnsd") as server:
        spec = LoadSpec(port=server.port, qname="www.example.com", qps=5000, tcp_rate=200, duration=3, grace=1)
        result = run_load(spec)
    assert result.udp_sent >= 0.95 * 5000 * 3, result.summary()
    assert result.udp_answered == result.udp_sent, result.summary()
    assert (result.udp_lost, result.udp_failed) == (0, 0)
    assert result.tcp_sent >= 0.9 * 200 * 3 and result.tcp_answered == result.tcp_sent, result.summary()
    assert result.clean


@needs_gdnsd
def test_wrong_rcode_counts_as_failed(config_source: Path, tmp_path: Path) -> None:
    with gdnsd(config_source, tmp_path / "gdnsd") as server:
        result = run_load(LoadSpec(port=server.port, qname="www.example.com", rcode=3, qps=200, tcp_rate=10, duration=0.5))
    assert result.udp_sent > 0 and result.udp_failed == result.udp_sent and result.udp_lost == 0
    assert result.tcp_failed == result.tcp_sent and result.tcp_errors == {"bad-answer": result.tcp_sent}


@needs_gdnsd
def test_detects_loss_when_the_server_is_sigkilled(config_source: Path, tmp_path: Path) -> None:
    server = gdnsd(config_source, tmp_path / "gdnsd").start()
    outcome: list[LoadResult] = []
    try:
        spec = LoadSpec(port=server.port, qname="www.example.com", qps=2000, tcp_rate=50, duration=3, grace=0.5)
        runner = threading.Thread(target=lambda: outcome.append(run_load(spec)))
        runner.start()
        time.sleep(1.5)  # the kill comes 1.5 s into the load: the loss times below are measured against it
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        runner.join(timeout=30)
    finally:
        server.stop()
    (result,) = outcome
    assert result.udp_answered > 0  # before the kill
    assert result.udp_lost > 0 and result.tcp_failed > 0, result.summary()
    # Loss is reported with when it happened: after the kill, not before.
    assert min(result.udp_loss_times) > 0.5
    assert min(result.tcp_failure_times) > 0.5


@needs_gdnsd
def test_runs_as_a_script_with_json(config_source: Path, tmp_path: Path) -> None:
    with gdnsd(config_source, tmp_path / "gdnsd") as server:
        done = subprocess.run(
            [sys.executable, str(REPO / "tests" / "loadgen.py"), "--server", f"127.0.0.1:{server.port}",
             "--qname", "www.example.com", "--qps", "300", "--duration", "0.5", "--json"],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["udp_sent"] > 0 and report["udp_answered"] == report["udp_sent"]
    assert report["udp_lost"] == 0




def test_a_run_in_its_own_process_reports_when_it_began() -> None:
    # No server: every query is lost, each stamped relative to a start the caller can place.
    spec = LoadSpec(port=free_port(), qps=200, duration=0.5, grace=0.2)
    before = time.monotonic()
    done = subprocess.run(
        run_argv(sys.executable, str(REPO / "tests" / "loadgen.py"), spec),
        capture_output=True, text=True, timeout=60,
    )
    after = time.monotonic()
    assert done.returncode == 1, done.stderr  # not clean
    outcome = LoadOutcome.from_report(done.stdout)
    assert before < outcome.started < after
    result = outcome.result
    assert result.udp_sent > 0 and result.udp_lost == result.udp_sent == len(result.udp_loss_times)
    assert outcome.udp_losses_after(before) == result.udp_loss_times
    assert outcome.udp_losses_after(after) == []
    assert outcome.tcp_failures_after(before) == []
    with pytest.raises(ValueError, match="no report"):
        LoadOutcome.from_report("\n")
