"""Shared pieces of the daemon, replace and systemd tests: a config dir, the gdnsd command, daemon cleanup.

Every daemon these tests start (daemonized, so not our child) is found by its
pidfile or by its command line naming the test's config dir, and killed by PID
at teardown. Servers listen on loopback only, on free ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, free_port, pygdnsd_python
from pygdnsd.daemon.initscript_verbs import process_gone

DEBIAN_GDNSDCTL = Path("/usr/bin/gdnsdctl")

ZONE = """\
$TTL 300
@ SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
www A {www}
"""


def zone_text(www: str = "192.0.2.10") -> str:
    return ZONE.format(www=www)


@dataclass
class Site:
    """A config dir for one daemon, and what the tests need to know about it."""

    root: Path
    port: int

    @property
    def cfgdir(self) -> Path:
        return self.root / "cfg"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "gdnsd.pid"

    @property
    def zone_file(self) -> Path:
        return self.cfgdir / "zones" / "example.com"

    def write(self, extra_options: str = "", www: str = "192.0.2.10") -> Site:
        (self.cfgdir / "zones").mkdir(parents=True, exist_ok=True)
        (self.cfgdir / "config").write_text(
            "options => {\n"
            "  listen => [ 127.0.0.1 ]\n"
            f"  dns_port => {self.port}\n"
            f"  run_dir => {self.run_dir}\n"
            f"  state_dir => {self.root / 'state'}\n"
            "  udp_threads => 1\n"
            "  tcp_threads => 1\n"
            f"{extra_options}"
            "}\n"
        )
        self.zone_file.write_text(zone_text(www))
        return self


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(REPO / "service") + os.pathsep + out.get("PYTHONPATH", "")
    return out


def gdnsd(site: Site, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run our ``gdnsd -c CFGDIR ARGS...`` to completion."""
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), *args],
        capture_output=True, text=True, env=env(), timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )


def debian_gdnsdctl(site: Site, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEBIAN_GDNSDCTL), "-c", str(site.cfgdir), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def pids_serving(cfgdir: Path) -> list[int]:
    """Live daemons whose command line names ``cfgdir`` (our daemons of this test).

    A daemon's worker processes (its children, same command line) are part
    of it, not daemons of their own; a worker whose daemon is gone is listed.
    """
    needle = str(cfgdir).encode()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if needle in cmdline.split(b"\0") and fields[0] not in ("Z", "X"):
            parents[int(entry.name)] = int(fields[1])
    return sorted(pid for pid, parent in parents.items() if parent not in parents)


def alive(pid: int) -> bool:
    return not process_gone(pid)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def kill_all(cfgdir: Path) -> None:
    for _ in range(3):
        pids = pids_serving(cfgdir)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pids_serving(cfgdir), 5.0)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path / "site", free_port()).write()
    yield made
    kill_all(made.cfgdir)


def query(port: int, name: str, qtype: int = 1, tcp: bool = False, qid: int = 0x1234,
          timeout: float = 2.0) -> bytes:
    """One DNS query to 127.0.0.1:port; the raw response."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.strip(".").split("."))
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            size = struct.unpack("!H", _recv_exactly(sock, 2))[0]
            return _recv_exactly(sock, size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        return sock.recv(65535)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def a_records(response: bytes) -> list[str]:
    """The A records of the answer section (the tests' zones use no compression traps)."""
    count = struct.unpack("!H", response[6:8])[0]
    pos = 12
    while response[pos] != 0:
        pos += response[pos] + 1
    pos += 5
    found = []
    for _ in range(count):
        if response[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while response[pos] != 0:
                pos += response[pos] + 1
            pos += 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", response[pos:pos + 10])
        pos += 10
        if rtype == 1:
            found.append(".".join(str(b) for b in response[pos:pos + 4]))
        pos += rdlen
    return sorted(found)


def daemonize(site: Site, *flags: str) -> int:
    """``gdnsd daemonize`` that must succeed; the daemon's pid (from the pidfile)."""
    result = gdnsd(site, *flags, "daemonize")
    assert result.returncode == 0, result.stderr
    return int(site.pidfile.read_text())
