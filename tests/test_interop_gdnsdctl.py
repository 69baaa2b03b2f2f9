"""Debian's gdnsdctl (the C binary) drives pygdnsd's daemon; its stats/states look like gdnsd's.

The other direction (our gdnsdctl driving Debian's gdnsd) is tests/test_gdnsdctl.py.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import REAL_GDNSD, free_port
from daemon_support import (
    DEBIAN_GDNSDCTL,
    Site,
    a_records,
    alive,
    daemonize,
    debian_gdnsdctl,
    query,
    wait_for,
)
from pygdnsd.control import protocol

pytestmark = pytest.mark.skipif(
    not (DEBIAN_GDNSDCTL.exists() and REAL_GDNSD.exists()),
    reason="needs Debian's gdnsd 3.8.1 and gdnsdctl (apt-get install gdnsd)",
)


def shape(data: Any) -> Any:
    """Key order and nesting, values dropped: what must match gdnsd."""
    if isinstance(data, dict):
        return [(key, shape(value)) for key, value in data.items()]
    return type(data).__name__


def real_gdnsd_stats(tmp_path: Path, site: Site) -> tuple[str, str]:
    """``gdnsdctl stats`` and ``states`` from Debian's gdnsd on the same zones."""
    real = Site(tmp_path / "real", free_port()).write()
    proc = subprocess.Popen(
        [str(REAL_GDNSD), "-c", str(real.cfgdir), "start"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: debian_gdnsdctl(real, "-o", "status").returncode == 0, 20)
        stats = debian_gdnsdctl(real, "stats").stdout
        states = debian_gdnsdctl(real, "states").stdout
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return stats, states


def test_debian_gdnsdctl_drives_our_daemon(tmp_path: Path, site: Site) -> None:
    pid = daemonize(site)

    status = debian_gdnsdctl(site, "status")
    assert status.returncode == 0, status.stderr
    assert status.stderr == f"info: version 3.8.1 running at PID {pid}\n"

    for _ in range(3):
        assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
    assert a_records(query(site.port, "www.example.com", tcp=True)) == ["192.0.2.10"]
    query(site.port, "nope.example.com")
    stats = debian_gdnsdctl(site, "stats")
    assert stats.returncode == 0, stats.stderr
    ours = json.loads(stats.stdout)
    assert ours["udp"]["reqs"] == 4
    assert ours["tcp"]["reqs"] == 1
    assert ours["stats"]["noerror"] == 4
    assert ours["stats"]["nxdomain"] == 1
    assert isinstance(ours["uptime"], int)

    reference_stats, reference_states = real_gdnsd_stats(tmp_path, site)
    assert shape(ours) == shape(json.loads(reference_stats))
    # Byte layout too (tabs, separators, final newline), with the numbers aside.
    assert [line.split(":")[0] for line in stats.stdout.splitlines()] == [
        line.split(":")[0] for line in reference_stats.splitlines()
    ]
    states = debian_gdnsdctl(site, "states")
    assert states.returncode == 0, states.stderr
    assert states.stdout == reference_states == "{\n\n}\n"

    reload = debian_gdnsdctl(site, "reload-zones")
    assert reload.returncode == 0, reload.stderr
    assert reload.stderr == "info: Zone data reloaded\n"

    stop = debian_gdnsdctl(site, "stop")
    assert stop.returncode == 0, stop.stderr
    assert stop.stderr == "info: Stop command successful, daemon exited\n"
    assert wait_for(lambda: not alive(pid), 2)
    assert not site.pidfile.exists()
    after = debian_gdnsdctl(site, "-o", "status")
    assert after.returncode == 1


# Keys that would make the daemon stop, replace itself or enter a takeover:
# the real thing, not garbage, and the test needs the daemon to stay.
ACTING_KEYS = frozenset(b"XR1")


def harmless(garbage: bytes) -> bytes:
    """``garbage`` with any key that would act, where the daemon reads a header, made an unknown one.

    Seed 20240503 puts a REQ_STOP at a header boundary of message 19 and a
    REQ_REPL in message 10: whether the daemon then still answered raced with
    its own stop. Headers are found as the daemon frames them (a REQ_CHAL of
    legal sizes carries data; one of illegal sizes ends the connection).
    """
    out = bytearray(garbage)
    start = 0
    while start + protocol.HEADER_SIZE <= len(out):
        if out[start] in ACTING_KEYS:
            out[start] = ord("Q")
        try:
            payload = protocol.request_payload_length(protocol.decode_header(bytes(out[start : start + 8])))
        except protocol.ProtocolError:
            break
        start += protocol.HEADER_SIZE + payload
    return bytes(out)


def test_control_socket_garbage_leaves_the_daemon_serving(site: Site) -> None:
    daemonize(site)
    path = str(site.run_dir / "control.sock")
    rng = random.Random(20240503)
    idle = []
    try:
        for _ in range(40):
            idle.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            idle[-1].connect(path)
        messages = [
            b"S\0\0",  # truncated header
            b"S\0\0\0\xff\xff\xff\xff",  # huge length on a request that has none
            b"C\0\0\x01\xff\xff\xff\x7f" + b"x" * 100,  # huge challenge length
            b"\x00" * 8,
            b"Q" * 8,
        ] + [harmless(rng.randbytes(rng.randint(1, 300))) for _ in range(60)]
        for message in messages:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(path)
                try:
                    sock.sendall(message)
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(4096)
                except OSError:
                    pass
        status = debian_gdnsdctl(site, "status")
        assert status.returncode == 0, status.stderr
        assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]
    finally:
        for sock in idle:
            sock.close()
    assert debian_gdnsdctl(site, "stop").returncode == 0
