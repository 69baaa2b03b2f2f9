"""``tcp_control`` end to end: a daemonized pygdnsd, gdnsdctl -s, and replaces.

Every daemon is found by its pidfile or command line and killed by PID at
teardown (the ``site`` fixture); everything listens on loopback, free ports.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from dataclasses import dataclass, field

from conftest import free_port, pygdnsd_python
from daemon_support import Site, a_records, alive, daemonize, env, gdnsd, query, wait_for
from pygdnsd.control import protocol

QNAME = "www.example.com"


def tcp_control(**ports: tuple[int, str]) -> str:
    """The ``tcp_control`` option: name -> (port, per-address options)."""
    entries = "".join(f"    127.0.0.1:{port} => {{ {opts} }}\n" for port, opts in ports.values())
    return f"  tcp_control => {{\n{entries}  }}\n"


def gdnsdctl(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Our gdnsdctl over TCP (``-s``), as the gdnsd test suite runs it."""
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-s", f"127.0.0.1:{port}", "-t", "60", *args],
        capture_output=True, text=True, env=env(), timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


def info_pid(port: int) -> int:
    """REQ_INFO on a fresh TCP connection: the PID that answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(protocol.info_request(protocol.COMPAT_VERSION).encode())
        raw = b""
        while len(raw) < protocol.HEADER_SIZE:
            chunk = sock.recv(protocol.HEADER_SIZE - len(raw))
            if not chunk:
                raise ConnectionError(f"closed after {len(raw)} bytes")
            raw += chunk
    header = protocol.decode_header(raw)
    if header.key != protocol.ResponseKey.ACK:
        raise ConnectionError(f"answered {protocol.key_name(header.key)}")
    return header.d


def test_each_listener_allows_what_its_options_say(site: Site) -> None:
    ro, ctl = free_port(), free_port()
    site.write(tcp_control(ro=(ro, ""), ctl=(ctl, "ctl_ok => true")))
    pid = daemonize(site)
    status = gdnsdctl(ro, "status")
    assert status.returncode == 0 and f"running at PID {pid}" in status.stderr, status.stderr
    assert '"udp"' in gdnsdctl(ro, "stats").stdout
    site.write(tcp_control(ro=(ro, ""), ctl=(ctl, "ctl_ok => true")), www="192.0.2.99")
    for port, action in ((ro, "reload-zones"), (ro, "replace"), (ro, "stop"), (ctl, "stop")):
        result = gdnsdctl(port, action)
        assert result.returncode != 0, (port, action, result.stderr)
    assert alive(pid) and int(site.pidfile.read_text()) == pid
    assert a_records(query(site.port, QNAME)) == ["192.0.2.10"]  # no reload went through
    assert gdnsdctl(ctl, "reload-zones").returncode == 0
    assert a_records(query(site.port, QNAME)) == ["192.0.2.99"]


@dataclass
class InfoPoller:
    """REQ_INFO on fresh TCP connections, over and over, on a thread: who answered, what failed."""

    port: int
    answered: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(100_000):  # bounded; ends when told to
            if self.done.wait(0.005):
                return
            try:
                self.answered.append(info_pid(self.port))
            except OSError as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(10)


def test_a_replace_over_tcp_hands_the_listeners_over_and_refuses_no_connection(site: Site) -> None:
    ro, ctl = free_port(), free_port()
    site.write(tcp_control(ro=(ro, ""), ctl=(ctl, "ctl_ok => true")))
    old = daemonize(site)
    poller = InfoPoller(ro)
    poller.start()
    try:
        assert wait_for(lambda: old in poller.answered, 10.0)
        result = gdnsdctl(ctl, "replace")
        assert result.returncode == 0 and "SUCCESS" in result.stderr, result.stderr
        new = int(site.pidfile.read_text())
        assert new != old
        assert wait_for(lambda: not alive(old), 10.0)
        assert wait_for(lambda: poller.answered[-1:] == [new], 10.0)
    finally:
        poller.stop()
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answered) == {old, new}
    assert info_pid(ctl) == new
    # The new daemon serves the same permissions on the listeners it took over.
    assert gdnsdctl(ro, "reload-zones").returncode != 0
    assert gdnsdctl(ctl, "reload-zones").returncode == 0


def test_a_replace_applies_the_new_tcp_control_config(site: Site) -> None:
    kept, removed, added = free_port(), free_port(), free_port()
    site.write(tcp_control(kept=(kept, ""), removed=(removed, "ctl_ok => true")))
    old = daemonize(site)
    assert gdnsdctl(kept, "reload-zones").returncode != 0
    site.write(tcp_control(kept=(kept, "ctl_ok => true"), added=(added, "")))
    result = gdnsd(site, "replace")
    assert result.returncode == 0, result.stderr
    new = int(site.pidfile.read_text())
    assert new != old and wait_for(lambda: not alive(old), 10.0)
    assert gdnsdctl(kept, "reload-zones").returncode == 0  # ctl_ok now
    assert info_pid(added) == new
    try:
        info_pid(removed)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError(f"127.0.0.1:{removed} still answers after its removal from the config")


def test_a_tcp_control_address_in_use_fails_the_start_naming_it(site: Site) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        site.write(tcp_control(busy=(port, "")))
        result = gdnsd(site, "daemonize")
    assert result.returncode != 0
    assert "tcp_control" in result.stderr and f"127.0.0.1:{port}" in result.stderr, result.stderr
