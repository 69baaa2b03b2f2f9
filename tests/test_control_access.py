"""Control listener permissions (control/access.py) and control/server.py's TCP listeners, behind a fake daemon.

What gdnsd 3.8.1 does on a TCP control listener was observed first (the
differential test checks it): read-only requests always, challenges with
``chal_ok``, reload and replace with ``ctl_ok``, anything else RESP_DENY with
the connection left open; a read that ends inside a header closes it.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REAL_GDNSDCTL, free_port, pygdnsd_python
from daemon_support import env, wait_for
from pygdnsd.config.addresses import format_address
from pygdnsd.config.options import ControlAddress
from pygdnsd.control import access, protocol, tcp_listeners
from pygdnsd.control.access import Access
from pygdnsd.control.client import ControlClient, RequestDenied
from pygdnsd.control.protocol import RequestKey
from pygdnsd.control.server import ControlServer, bind_unix_listener
from test_control_server import FAKE_PID, STATES, STATS, FakeDaemon

ALL_KEYS = range(256)
READ_ONLY_KEYS = {ord("I"), ord("S"), ord("E")}
STATE_CHANGING_CALLS = {"reload", "stop", "replace", "acme", "flush"}
PAYLOAD = b"0123456789012345678901234567890123456789012"
CHALLENGE = protocol.challenge_request([protocol.AcmeChallenge(b"\x07example\x03com\x00", PAYLOAD)])


# --- Access: the decision, key by key ------------------------------------------


def allowed(level: Access) -> set[int]:
    return {key for key in ALL_KEYS if level.allows(key)}


def test_read_only_allows_info_stats_states_and_nothing_else() -> None:
    assert allowed(access.READ_ONLY) == READ_ONLY_KEYS
    assert not access.READ_ONLY.payloads  # a denied REQ_CHAL is a bare header


def test_chal_ok_adds_the_challenge_requests_only() -> None:
    level = Access(challenges=True)
    assert allowed(level) == READ_ONLY_KEYS | {ord("C"), ord("c")}
    assert level.payloads


def test_ctl_ok_adds_reload_and_replace_but_never_stop_or_takeover() -> None:
    level = Access(daemon_control=True)
    assert allowed(level) == READ_ONLY_KEYS | {ord("Z"), ord("R")}
    both = Access(challenges=True, daemon_control=True)
    assert allowed(both) == READ_ONLY_KEYS | {ord("C"), ord("c"), ord("Z"), ord("R")}
    for key in (RequestKey.STOP, RequestKey.TAK1, RequestKey.TAK2, RequestKey.TAKE):
        assert not both.allows(key)


def test_the_unix_socket_allows_every_key() -> None:
    assert allowed(access.LOCAL) == set(ALL_KEYS)  # unknown ones are then answered RESP_UNK


def test_a_tcp_control_address_gets_the_access_its_options_say() -> None:
    address = ControlAddress("127.0.0.1", 885, socket.AF_INET, chal_ok=True, ctl_ok=False)
    assert tcp_listeners.access_of(address) == Access(challenges=True)
    assert tcp_listeners.label(address) == "TCP control socket 127.0.0.1:885"


# --- the server with TCP listeners ------------------------------------------------


@dataclass
class Served:
    daemon: FakeDaemon
    server: ControlServer
    unix_path: str
    ports: dict[str, int]  # listener name -> TCP port


@contextlib.contextmanager
def serve(
    idle_timeout: float = 30.0, max_clients: int = 32, daemon: FakeDaemon | None = None
) -> Iterator[Served]:
    base = Path(tempfile.mkdtemp(prefix="pgacc"))
    try:
        addresses = {
            "ro": ControlAddress("127.0.0.1", free_port(), socket.AF_INET),
            "chal": ControlAddress("127.0.0.1", free_port(), socket.AF_INET, chal_ok=True),
            "ctl": ControlAddress("127.0.0.1", free_port(), socket.AF_INET, ctl_ok=True),
            "ro6": ControlAddress("::1", free_port("::1"), socket.AF_INET6),
        }
        sockets = tcp_listeners.open_all(list(addresses.values()))
        daemon = daemon if daemon is not None else FakeDaemon()
        path = str(base / "c.sock")
        server = ControlServer(
            bind_unix_listener(path),
            daemon,
            tcp_listeners=tcp_listeners.listeners(sockets, list(addresses.values())),
            idle_timeout=idle_timeout,
            max_clients=max_clients,
        )
        server.start()
        try:
            yield Served(daemon, server, path, {name: a.port for name, a in addresses.items()})
        finally:
            server.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def served() -> Iterator[Served]:
    with serve() as made:
        yield made


def connect(served: Served, name: str, timeout: float = 5.0) -> socket.socket:
    if name == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(served.unix_path)
        return sock
    host = "::1" if name.endswith("6") else "127.0.0.1"
    return socket.create_connection((host, served.ports[name]), timeout=timeout)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    for _ in range(size + 1):
        if len(data) >= size:
            break
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_response(sock: socket.socket, request_key: int) -> tuple[int, bytes]:
    """(response key, its data) for one request; key 0 when the server closed instead."""
    raw = read_exactly(sock, protocol.HEADER_SIZE)
    if len(raw) < protocol.HEADER_SIZE:
        return 0, b""
    header = protocol.decode_header(raw)
    return header.key, read_exactly(sock, protocol.response_payload_length(request_key, header))


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def expected_answer(name: str, key: int) -> int:
    answers = {
        "ro": {},
        "chal": {ord("C"): ord("A"), ord("c"): ord("A")},
        "ctl": {ord("Z"): ord("A"), ord("R"): ord("F")},  # the fake daemon fails replace
    }[name]
    if key in READ_ONLY_KEYS:
        return ord("A")
    return answers.get(key, ord("D"))


@pytest.mark.parametrize("name", ["ro", "chal", "ctl"])
def test_each_tcp_listener_answers_every_key_as_its_level_says(served: Served, name: str) -> None:
    with connect(served, name) as sock:
        for key in ALL_KEYS:
            request = CHALLENGE if key == ord("C") and name == "chal" else protocol.Request(protocol.Header(key))
            sock.sendall(request.encode())
            got, data = read_response(sock, key)
            assert got == expected_answer(name, key), f"{name}: key {key:#04x} got {got:#04x}"
            if key == ord("S"):
                assert data == STATS
            if key == ord("E"):
                assert data == STATES
    made = set(served.daemon.calls) & STATE_CHANGING_CALLS
    assert made == {"ro": set(), "chal": {"acme", "flush"}, "ctl": {"reload", "replace"}}[name]


def test_unknown_keys_are_unk_on_the_unix_socket_and_deny_over_tcp(served: Served) -> None:
    for name, answer in (("unix", "U"), ("ro", "D"), ("ctl", "D")):
        with connect(served, name) as sock:
            sock.sendall(b"zzzzzzzz" + protocol.info_request((3, 8, 1)).encode())
            assert read_response(sock, ord("z"))[0] == ord(answer)
            assert read_response(sock, RequestKey.INFO)[0] == ord("A")  # the connection lives on


def test_a_denied_challenge_has_its_data_read_as_headers_as_gdnsd_does(served: Served) -> None:
    data = CHALLENGE.encode()  # 8 + 58 bytes: seven whole "headers" of data and two bytes over
    with connect(served, "ro") as sock:
        sock.sendall(data)
        answers = read_exactly(sock, 8 * 8)
        assert answers == protocol.response(protocol.ResponseKey.DENY).encode() * 8
        assert closed_by_server(sock)  # the two bytes left are a partial header
    assert served.daemon.challenges == []


@pytest.mark.parametrize("name", ["unix", "ro"])
def test_a_read_ending_inside_a_header_closes_the_connection_at_once(served: Served, name: str) -> None:
    # The fixture's idle timeout is 30 s: an answer within 5 s is this rule, not the timeout.
    with connect(served, name, timeout=5.0) as sock:
        sock.sendall(b"I\0")
        assert closed_by_server(sock)
    with connect(served, name) as sock:  # whole requests pipelined in one write are all answered
        sock.sendall(protocol.info_request((3, 8, 1)).encode() * 3)
        assert [read_response(sock, RequestKey.INFO)[0] for _ in range(3)] == [ord("A")] * 3


def test_a_challenge_whose_data_arrives_in_pieces_is_accepted(served: Served) -> None:
    data = CHALLENGE.encode()
    with connect(served, "chal") as sock:
        sock.sendall(data[:20])
        assert wait_for(lambda: served.server.client_count == 1, 2.0)
        sock.sendall(data[20:])
        assert read_response(sock, RequestKey.CHAL)[0] == ord("A")
    assert len(served.daemon.challenges) == 1


def test_idle_tcp_clients_are_dropped() -> None:
    with serve(idle_timeout=1.0) as served, connect(served, "ro", timeout=10.0) as sock:
        assert closed_by_server(sock)


def test_a_tcp_flood_neither_pushes_out_unix_clients_nor_grows_past_the_cap() -> None:
    with serve(max_clients=8) as served, connect(served, "unix") as local:
        local.sendall(protocol.info_request((3, 8, 1)).encode())
        assert read_response(local, RequestKey.INFO)[0] == ord("A")
        flood = [connect(served, "ro") for _ in range(40)]
        try:
            assert wait_for(lambda: served.server.client_count <= 9, 2.0)
            # The newest TCP client is served; the unix one, idle longest, is still there.
            flood[-1].sendall(protocol.info_request((3, 8, 1)).encode())
            assert read_response(flood[-1], RequestKey.INFO)[0] == ord("A")
            local.sendall(protocol.info_request((3, 8, 1)).encode())
            assert read_response(local, RequestKey.INFO)[0] == ord("A")
            assert served.server.client_count <= 9
        finally:
            for sock in flood:
                sock.close()


class BigStatsDaemon(FakeDaemon):
    """Stats of 64 KiB: a few pipelined STATs make megabytes of answers."""

    def stats_json(self) -> bytes:
        self.calls.append("stats")
        return b"{" + b" " * (64 * 1024 - 2) + b"}"


def test_a_client_that_does_not_read_its_answers_stops_being_read() -> None:
    daemon = BigStatsDaemon()

    def answered() -> int:
        return daemon.calls.count("stats")

    with serve(daemon=daemon) as served, connect(served, "ro") as greedy:
        greedy.sendall((b"S" + bytes(7)) * 8192)
        assert wait_for(lambda: answered() >= 4, 5.0)
        # Unbounded, the first read alone would be answered 1024 times (64 MiB queued).
        assert not wait_for(lambda: answered() > 200, 2.0), answered()
        with ControlClient(("127.0.0.1", served.ports["ro"]), 5) as other:
            assert other.status().pid == FAKE_PID
        # Once it reads, it is served again.
        before = answered()
        assert len(read_exactly(greedy, 8 << 20)) == 8 << 20
        assert wait_for(lambda: answered() > before, 5.0)


def answers_of_a_read_only_listener(data: bytes) -> bytes:
    """What a read-only TCP listener must send for ``data``: each whole 8 bytes is a header."""
    out = b""
    for pos in range(0, len(data) - len(data) % protocol.HEADER_SIZE, protocol.HEADER_SIZE):
        key = data[pos]
        if key == RequestKey.INFO:
            out += protocol.info_ack((3, 8, 1), FAKE_PID).encode()
        elif key == RequestKey.STAT:
            out += protocol.data_ack(STATS).encode()
        elif key == RequestKey.STATE:
            out += protocol.data_ack(STATES).encode()
        else:
            out += protocol.response(protocol.ResponseKey.DENY).encode()
    return out


def test_junk_on_a_read_only_listener_changes_nothing_and_harms_nothing(served: Served) -> None:
    rng = random.Random(20240531)
    sends = [
        b"GET / HTTP/1.0\r\n\r\n",
        b"C\0\0\x01" + struct.pack("=I", 0xFFFFFFFF),
        b"X" + bytes(7),  # stop
        b"Z" + bytes(7) + b"R" + bytes(7) + b"c" + bytes(7) + b"1" + bytes(7),
        b"\xff" * 70_000,
        *(rng.randbytes(rng.randrange(1, 400)) for _ in range(150)),
        # Keys a state change would start with, followed by random bytes.
        *(bytes([rng.choice(b"ZXRCc12TISE")]) + rng.randbytes(rng.randrange(7, 120)) for _ in range(150)),
    ]
    for data in sends:
        received = b""
        with connect(served, "ro", timeout=5.0) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            for _ in range(100_000):
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
        expected = answers_of_a_read_only_listener(data)
        if len(data) <= 4096:
            assert received == expected, data
        else:  # the answers to a flood may be cut off when the client's EOF is read
            assert expected.startswith(received) and received, len(received)
    assert not set(served.daemon.calls) & STATE_CHANGING_CALLS
    assert served.daemon.challenges == []
    assert not served.daemon.stopped.is_set()
    with ControlClient(("127.0.0.1", served.ports["ro"]), 5) as client:
        assert client.status().pid == FAKE_PID
        assert client.stats() == STATS
        with pytest.raises(RequestDenied):
            client.reload_zones()
    assert "reload" not in served.daemon.calls


def debian_gdnsdctl(port: int, *args: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REAL_GDNSDCTL), "-s", format_address(host, port), "-t", "5", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_debian_gdnsdctl_speaks_to_the_tcp_listeners(served: Served) -> None:
    assert REAL_GDNSDCTL.exists(), "Debian's gdnsdctl is the reference client (dev/bootstrap)"
    ro, chal, ctl = (served.ports[name] for name in ("ro", "chal", "ctl"))
    status = debian_gdnsdctl(ro, "status")
    assert status.returncode == 0 and f"PID {FAKE_PID}" in status.stderr, status.stderr
    assert debian_gdnsdctl(ro, "stats").stdout.encode() == STATS
    for args in (("reload-zones",), ("stop",), ("acme-dns-01", "example.com", PAYLOAD.decode())):
        assert debian_gdnsdctl(ro, *args).returncode != 0, args
    assert not set(served.daemon.calls) & STATE_CHANGING_CALLS
    assert debian_gdnsdctl(chal, "acme-dns-01", "example.com", PAYLOAD.decode()).returncode == 0
    assert debian_gdnsdctl(ctl, "reload-zones").returncode == 0
    assert debian_gdnsdctl(ctl, "stop").returncode != 0
    assert [c for c in served.daemon.calls if c in STATE_CHANGING_CALLS] == ["acme", "reload"]


def test_an_ipv6_listener_serves_both_gdnsdctls(served: Served) -> None:
    port = served.ports["ro6"]
    ours = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-s", f"[::1]:{port}", "-t", "5", "status"],
        capture_output=True, text=True, env=env(), timeout=30, check=False,
    )
    assert ours.returncode == 0 and f"PID {FAKE_PID}" in ours.stderr, ours.stderr
    theirs = debian_gdnsdctl(port, "status", host="::1")
    assert theirs.returncode == 0 and f"PID {FAKE_PID}" in theirs.stderr, theirs.stderr
    assert debian_gdnsdctl(port, "reload-zones", host="::1").returncode != 0
    assert "reload" not in served.daemon.calls
