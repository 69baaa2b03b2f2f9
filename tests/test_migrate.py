"""Debian's gdnsd 3.8.1 and pygdnsd replace each other, in both directions (issue 15).

Each test runs real daemons of both kinds on one config dir (two addresses,
two sockets of each kind per address, a tcp_control listener) and checks
what must carry over: the very same kernel sockets, the counters and uptime,
the live ACME challenges, and who answers afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import REAL_GDNSD, REPO
from daemon_support import env, wait_for
from migrate_support import (
    Lineup,
    answers,
    dns_socket_inodes,
    process_socket_inodes,
    serves_everywhere,
)
from pygdnsd.control import protocol
from pygdnsd.replace.takeover import TakeoverClient

PAYLOAD = "0123456789012345678901234567890123456789012"


def some_traffic(lineup: Lineup) -> None:
    """Answers of several kinds, so several counters move."""
    serves_everywhere(lineup)
    assert answers("127.0.0.1", lineup.port, "nothing.example.com") == []
    assert answers("127.0.0.1", lineup.port, "example.org") == []  # refused


def assert_carried(before: dict[str, object], after: dict[str, object]) -> None:
    """Every counter of ``after`` is at least what it was in ``before`` (another daemon's)."""
    for group in ("stats", "udp", "tcp"):
        old, new = before[group], after[group]
        assert isinstance(old, dict) and isinstance(new, dict)
        shrunk = {name: (value, new[name]) for name, value in old.items() if new[name] < value}
        assert not shrunk, f"{group} counters went back: {shrunk}"
    assert isinstance(before["uptime"], int) and isinstance(after["uptime"], int)
    assert after["uptime"] >= before["uptime"]


def test_pygdnsd_takes_over_a_running_gdnsd(lineup: Lineup) -> None:
    gdnsd = lineup.start("gdnsd")
    some_traffic(lineup)
    sockets = dns_socket_inodes(lineup.port)
    assert len(sockets) == 8  # 2 addresses x (2 UDP + 2 TCP)
    before = lineup.stats()
    assert before["stats"]["noerror"] >= 4 and before["stats"]["nxdomain"] >= 1

    ours, took = lineup.take_over(gdnsd, "pygdnsd")

    # Logged once the new daemon has seen the old one gone, which may be just after it answers.
    assert wait_for(lambda: "replace complete" in ours.log_text(), 10.0), ours.log_text()
    assert f"taking over from the old daemon (PID {gdnsd.pid}, gdnsd 3.8.1)" in ours.log_text()
    assert "Exiting cleanly at request of new daemon" in gdnsd.log_text()
    # The very sockets gdnsd listened on, received as it sent them, none bound anew.
    assert dns_socket_inodes(lineup.port) == sockets
    assert sockets <= process_socket_inodes(ours.pid)
    serves_everywhere(lineup)
    after = lineup.stats()
    assert_carried(before, after)
    assert after["stats"]["noerror"] >= before["stats"]["noerror"] + 4
    # tcp_control: gdnsd hands none over; ours bound its own beside it and answers there.
    status = lineup.gdnsdctl("-s", f"127.0.0.1:{lineup.control_port}", "status")
    assert status.returncode == 0 and f"running at PID {ours.pid}" in status.stderr, status.stderr
    assert took < 30.0


def test_gdnsd_takes_over_a_running_pygdnsd(lineup: Lineup) -> None:
    ours = lineup.start("pygdnsd")
    pidfile = lineup.run_dir / "gdnsd.pid"
    assert pidfile.read_text().strip() == str(ours.pid)
    some_traffic(lineup)
    sockets = dns_socket_inodes(lineup.port)
    before = lineup.stats()

    gdnsd, _ = lineup.take_over(ours, "gdnsd")

    log = gdnsd.log_text()
    assert f"Connected to old daemon version 3.8.1 at PID {ours.pid} for takeover" in log
    assert "Takeover request accepted, received 8 DNS sockets" in log
    assert dns_socket_inodes(lineup.port) == sockets
    assert sockets <= process_socket_inodes(gdnsd.pid)
    serves_everywhere(lineup)
    assert_carried(before, lineup.stats())
    # gdnsd keeps no pidfile: ours is gone with its daemon rather than name a dead PID.
    assert not pidfile.exists()
    assert f"takeover: PID {gdnsd.pid} took over, exiting" in ours.log_text()


def challenge_answers(lineup: Lineup, name: str) -> list[list[str]]:
    """The TXT answers for ``_acme-challenge.<name>`` over UDP and TCP on both listen addresses."""
    return [
        answers(host, lineup.port, f"_acme-challenge.{name}", "TXT", tcp=tcp)
        for host in ("127.0.0.1", "::1")
        for tcp in (False, True)
    ]


def handed_batches(lineup: Lineup) -> list[protocol.ChallengeBatch]:
    """What a running pygdnsd would hand a new daemon at REQ_TAK2 (its remaining seconds included);
    the conversation then ends before REQ_TAKE, so the daemon serves on as before."""
    client = TakeoverClient.connect(lineup.control_path, os.getpid(), 10.0)
    try:
        client.info()
        client.announce()
        return client.challenges()
    finally:
        client.close()


def test_acme_challenges_survive_gdnsd_to_pygdnsd_to_gdnsd(lineup: Lineup) -> None:
    first = lineup.start("gdnsd")
    added_between: list[tuple[float, float]] = []  # when each batch was added, within
    for name in ("www.example.com", "example.com"):  # two gdnsdctl runs: two batches
        began = time.monotonic()
        added = lineup.gdnsdctl("acme-dns-01", name, PAYLOAD)
        assert added.returncode == 0, added.stderr
        added_between.append((began, time.monotonic()))
    # Let some of their lifetime pass, so a lifetime carried over differs from a fresh one
    # by more than the whole seconds the hand-offs round away.
    time.sleep(3.0)
    ours, _ = lineup.take_over(first, "pygdnsd")
    assert "acme-dns-01: carried over 2 challenges from the old daemon" in ours.log_text()
    # gdnsd is gone: pygdnsd itself answers what gdnsd handed over, everywhere.
    assert challenge_answers(lineup, "www.example.com") == [[f'"{PAYLOAD}"']] * 4
    assert challenge_answers(lineup, "example.com") == [[f'"{PAYLOAD}"']] * 4
    # ...for what was left of their lifetime (acme_challenge_ttl 600), not a fresh one.
    asked_at = time.monotonic()
    batches = handed_batches(lineup)
    answered_at = time.monotonic()
    assert [[c.name for c in batch.challenges] for batch in batches] == [
        [b"\x03www\x07example\x03com\x00"],
        [b"\x07example\x03com\x00"],
    ]
    for batch, (began, done) in zip(batches, added_between, strict=True):
        # Whole seconds, rounded down at each of the two hand-offs (and a second for gdnsd's clock).
        assert 600 - (answered_at - began) - 3 <= batch.remaining <= 600 - (asked_at - done), batch.remaining
    assert wait_for(lambda: "takeover failed" in ours.log_text(), 10.0), ours.log_text()
    assert challenge_answers(lineup, "www.example.com") == [[f'"{PAYLOAD}"']] * 4
    second, _ = lineup.take_over(ours, "gdnsd")
    # Handed on by pygdnsd in gdnsd's own layout, with the time it had left.
    assert challenge_answers(lineup, "www.example.com") == [[f'"{PAYLOAD}"']] * 4
    assert challenge_answers(lineup, "example.com") == [[f'"{PAYLOAD}"']] * 4
    assert not second.exited()


def test_our_gdnsd_replace_takes_over_from_gdnsd(lineup: Lineup) -> None:
    gdnsd = lineup.start("gdnsd")
    some_traffic(lineup)
    before = lineup.stats()
    helper = subprocess.run(
        lineup.command("pygdnsd", "replace"), capture_output=True, text=True, env=env(), timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )
    assert helper.returncode == 0, helper.stderr
    # gdnsd keeps no pidfile: the helper found the old daemon over its control socket.
    assert f"REPLACE[helper]: replacing the daemon at PID {gdnsd.pid}" in helper.stderr
    assert gdnsd.process.wait(10) == 0
    new_pid = lineup.serving_pid()
    assert new_pid is not None and new_pid != gdnsd.pid
    assert (lineup.run_dir / "gdnsd.pid").read_text().strip() == str(new_pid)
    serves_everywhere(lineup)
    assert_carried(before, lineup.stats())


def test_a_replace_request_to_pygdnsd_starts_whatever_gdnsd_is_installed(lineup: Lineup, tmp_path: Path) -> None:
    """As after ``apt-get install gdnsd`` over pygdnsd: the path we run from now holds gdnsd 3.8.1."""
    installed = tmp_path / "sbin" / "gdnsd"
    installed.parent.mkdir()
    installed.symlink_to(REPO / ".venv" / "bin" / "gdnsd")  # our console script
    log = tmp_path / "installed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(installed), "-c", str(lineup.cfgdir), "start"], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=env(), start_new_session=True,
        )
    try:
        assert wait_for(lambda: lineup.serving_pid() == process.pid, 30.0), log.read_text()
        some_traffic(lineup)
        before = lineup.stats()
        # The package switch: the same path now holds Debian's gdnsd.
        installed.unlink()
        installed.symlink_to(REAL_GDNSD)
        replaced = lineup.gdnsdctl("replace")
        assert replaced.returncode == 0, replaced.stderr + log.read_text()
        assert "REPLACE[gdnsdctl]: SUCCESS, new daemon version 3.8.1" in replaced.stderr
        assert process.wait(10) == 0
        new_pid = lineup.serving_pid()
        assert new_pid is not None
        assert os.readlink(f"/proc/{new_pid}/exe") == str(REAL_GDNSD)
        argv = Path(f"/proc/{new_pid}/cmdline").read_bytes().split(b"\0")
        assert argv[:5] == [str(installed).encode(), b"-c", str(lineup.cfgdir).encode(), b"-R", b"start"]
        serves_everywhere(lineup)
        assert_carried(before, lineup.stats())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
