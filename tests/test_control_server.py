"""control/server.py behind a fake daemon, driven by Debian's gdnsdctl, our client, and garbage."""

from __future__ import annotations

import os
import random
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REAL_GDNSDCTL
from daemon_support import wait_for
from pygdnsd.control import protocol
from pygdnsd.control.access import READ_ONLY, Access
from pygdnsd.control.client import ControlClient, RequestDenied, RequestFailed, TryLater
from pygdnsd.control.server import ControlServer, Failed, Outcome, bind_unix_listener

needs_gdnsdctl = pytest.mark.skipif(
    not REAL_GDNSDCTL.exists(), reason="Debian's gdnsdctl is the reference client"
)
FAKE_PID = 4242
STATS = b'{\n\t"uptime": 7,\n\t"stats": {}\n}\n'
STATES = b"{\n\n}\n"


@dataclass
class FakeDaemon:
    """A ControlHandler that records calls and answers what the test sets."""

    reload_outcome: Outcome | Failed | BaseException = Outcome.ACK
    stop_outcome: Outcome = Outcome.ACK
    calls: list[str] = field(default_factory=list)
    challenges: list[protocol.AcmeChallenge] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    reload_gate: threading.Event | None = None
    acme_outcome: Outcome | Failed = Outcome.ACK

    def status(self) -> tuple[tuple[int, int, int], int]:
        self.calls.append("status")
        return ((3, 8, 1), FAKE_PID)

    def stats_json(self) -> bytes:
        self.calls.append("stats")
        return STATS

    def states_json(self) -> bytes:
        self.calls.append("states")
        return STATES

    def reload_zones(self) -> Outcome | Failed:
        self.calls.append("reload")
        if self.reload_gate is not None:
            self.reload_gate.wait(10)
        if isinstance(self.reload_outcome, BaseException):
            raise self.reload_outcome
        return self.reload_outcome

    def stop(self) -> Outcome:
        self.calls.append("stop")
        if self.stop_outcome is Outcome.ACK:
            self.stopped.set()
        return self.stop_outcome

    def replace(self) -> Outcome:
        self.calls.append("replace")
        return Outcome.FAIL

    def acme_add(self, challenges: Sequence[protocol.AcmeChallenge]) -> Outcome | Failed:
        self.calls.append("acme")
        if self.acme_outcome is not Outcome.ACK:
            return self.acme_outcome
        self.challenges.extend(challenges)
        return Outcome.ACK

    def acme_flush(self) -> Outcome:
        self.calls.append("flush")
        self.challenges.clear()
        return Outcome.ACK


@dataclass
class Served:
    daemon: FakeDaemon
    server: ControlServer
    config_dir: Path
    socket_path: str


@pytest.fixture
def served() -> Iterator[Served]:
    # A short path: unix socket paths must stay under ~108 bytes.
    base = Path(tempfile.mkdtemp(prefix="pgctl"))
    try:
        run_dir = base / "run"
        run_dir.mkdir(mode=0o700)
        config_dir = base / "etc"
        config_dir.mkdir()
        (config_dir / "config").write_text(f"options => {{ run_dir => {run_dir} }}\n")
        path = str(run_dir / "control.sock")
        daemon = FakeDaemon()
        server = ControlServer(bind_unix_listener(path), daemon, idle_timeout=2.0, max_clients=32)
        server.start()
        try:
            yield Served(daemon, server, config_dir, path)
        finally:
            server.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def gdnsdctl(served: Served, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REAL_GDNSDCTL), "-c", str(served.config_dir), "-t", "10", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def raw_exchange(path: str, data: bytes, want: int = 8, timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        got = b""
        for _ in range(100):
            if len(got) >= want:
                break
            chunk = sock.recv(want - len(got))
            if not chunk:
                break
            got += chunk
        return got


def test_socket_file_is_private(served: Served) -> None:
    assert stat.S_IMODE(os.stat(served.socket_path).st_mode) == 0o600


@needs_gdnsdctl
def test_debian_gdnsdctl_status(served: Served) -> None:
    result = gdnsdctl(served, "status")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"info: version 3.8.1 running at PID {FAKE_PID}\n"


@needs_gdnsdctl
@pytest.mark.parametrize(("action", "body"), [("stats", STATS), ("states", STATES)])
def test_debian_gdnsdctl_dumps_json(served: Served, action: str, body: bytes) -> None:
    result = gdnsdctl(served, action)
    assert result.returncode == 0, result.stderr
    assert result.stdout == body.decode()


@needs_gdnsdctl
def test_debian_gdnsdctl_reload_zones_success_and_failure(served: Served) -> None:
    ok = gdnsdctl(served, "reload-zones")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "info: Zone data reloaded\n"
    served.daemon.reload_outcome = Outcome.FAIL
    bad = gdnsdctl(served, "reload-zones")
    assert bad.returncode != 0
    assert "fatal: Reload transaction failed" in bad.stderr
    assert served.daemon.calls.count("reload") == 2


REASON = "zones/example.com:7: unsupported record type 'BOGUS'"
HEADER = struct.Struct("=BBBBI")


def test_a_failed_reload_says_why_to_a_client_that_asks_only(served: Served) -> None:
    served.daemon.reload_outcome = Failed(REASON)
    info = HEADER.pack(ord("I"), 3, 8, 1, 0)
    # As ControlSocket.md has it (d = 0): a bare RESP_FAIL, and the connection
    # stays in step (the next answer is INFO's ACK, not reason bytes).
    answer = raw_exchange(served.socket_path, info + HEADER.pack(ord("Z"), 0, 0, 0, 0) + info, want=24)
    assert answer[8:16] == HEADER.pack(ord("F"), 0, 0, 0, 0)
    assert HEADER.unpack(answer[16:24])[:1] == (ord("A"),)
    # Asking for up to 4096 bytes: RESP_FAIL, d = its length, the reason.
    size = len(REASON)
    answer = raw_exchange(served.socket_path, info + HEADER.pack(ord("Z"), 0, 0, 0, 4096), want=16 + size)
    assert answer[8:] == HEADER.pack(ord("F"), 0, 0, 0, size) + REASON.encode()
    # Never more than asked for.
    answer = raw_exchange(served.socket_path, info + HEADER.pack(ord("Z"), 0, 0, 0, 5), want=21)
    assert answer[8:] == HEADER.pack(ord("F"), 0, 0, 0, 5) + REASON.encode()[:5]
    with ControlClient(served.socket_path, 10, oneshot=True) as client:
        client.connect()
        with pytest.raises(RequestFailed) as failed:
            client.reload_zones()
    assert failed.value.reason == REASON
    assert str(failed.value) == f"daemon reported failure: {REASON}"


def test_a_reload_that_raised_an_empty_exception_still_says_why(served: Served) -> None:
    served.daemon.reload_outcome = MemoryError()
    with ControlClient(served.socket_path, 10, oneshot=True) as client:
        client.connect()
        with pytest.raises(RequestFailed) as failed:
            client.reload_zones()
    assert failed.value.reason == "MemoryError: the process ran out of memory"


@needs_gdnsdctl
def test_debian_gdnsdctl_hears_a_failure_as_from_gdnsd(served: Served) -> None:
    served.daemon.reload_outcome = Failed(REASON)
    bad = gdnsdctl(served, "reload-zones")
    assert (bad.returncode, bad.stderr) == (42, "fatal: Reload transaction failed\n")
    assert gdnsdctl(served, "status").returncode == 0  # the daemon is none the worse


@needs_gdnsdctl
def test_debian_gdnsdctl_acme(served: Served) -> None:
    payload = "0123456789012345678901234567890123456789012"
    added = gdnsdctl(served, "acme-dns-01", "Example.com", payload)
    assert added.returncode == 0, added.stderr
    assert served.daemon.challenges == [
        protocol.AcmeChallenge(b"\x07example\x03com\x00", payload.encode())
    ]
    flushed = gdnsdctl(served, "acme-dns-01-flush")
    assert flushed.returncode == 0, flushed.stderr
    assert served.daemon.challenges == []


@needs_gdnsdctl
def test_debian_gdnsdctl_replace_fails_until_implemented(served: Served) -> None:
    result = gdnsdctl(served, "replace")
    assert result.returncode != 0
    assert "Replace command to old daemon failed" in result.stderr


@needs_gdnsdctl
def test_debian_gdnsdctl_stop_waits_for_the_daemon_to_exit(served: Served) -> None:
    proc = subprocess.Popen(
        [str(REAL_GDNSDCTL), "-c", str(served.config_dir), "-t", "10", "stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert served.daemon.stopped.wait(10)
        # ACKed, but the "daemon" has not exited: gdnsdctl must still be waiting.
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        # Status still answers on other connections while the stop is pending.
        with ControlClient(served.socket_path, 5) as client:
            assert client.status().pid == FAKE_PID
        served.server.close()  # the daemon exits: its fds close
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == "info: Stop command successful, daemon exited\n"


def test_our_client_sees_each_outcome(served: Served) -> None:
    with ControlClient(served.socket_path, 5, oneshot=True) as client:
        assert client.connect().version == (3, 8, 1)
        assert client.stats() == STATS
        assert client.states() == STATES
        client.reload_zones()
        served.daemon.reload_outcome = Outcome.DENY
        with pytest.raises(RequestDenied):
            client.reload_zones()
        served.daemon.reload_outcome = Outcome.LATER
        with pytest.raises(TryLater):
            client.reload_zones()
        with pytest.raises(RequestFailed):
            client.replace()


def test_later_is_retried_until_the_daemon_lets_it_through(served: Served) -> None:
    served.daemon.reload_outcome = Outcome.LATER
    retries: list[str] = []

    def soft(exc: Exception) -> None:
        retries.append(type(exc).__name__)
        served.daemon.reload_outcome = Outcome.ACK

    with ControlClient(served.socket_path, 10, on_soft_failure=soft) as client:
        client.reload_zones()
    assert retries == ["TryLater"]
    assert served.daemon.calls.count("reload") == 2


def test_readonly_server_denies_state_changes() -> None:
    base = Path(tempfile.mkdtemp(prefix="pgctl"))
    try:
        path = str(base / "c.sock")
        daemon = FakeDaemon()
        server = ControlServer(bind_unix_listener(path), daemon, access=READ_ONLY)
        server.start()
        try:
            with ControlClient(path, 5, oneshot=True) as client:
                assert client.status().pid == FAKE_PID
                with pytest.raises(RequestDenied):
                    client.reload_zones()
            assert "reload" not in daemon.calls
        finally:
            server.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


CHALLENGE = protocol.parse_acme_challenge("example.com", "0123456789012345678901234567890123456789012")


@pytest.mark.parametrize("chal_ok", [False, True])
def test_chal_ok_lets_challenges_through_a_readonly_server(chal_ok: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="pgctl"))
    try:
        path = str(base / "c.sock")
        daemon = FakeDaemon()
        server = ControlServer(bind_unix_listener(path), daemon, access=Access(challenges=chal_ok))
        server.start()
        try:
            with ControlClient(path, 5, oneshot=True) as client:
                if chal_ok:
                    client.acme_dns_01([CHALLENGE])
                else:
                    with pytest.raises(RequestDenied):
                        client.acme_dns_01([CHALLENGE])
            assert daemon.challenges == ([CHALLENGE] if chal_ok else [])
            # A fresh client: a denied REQ_CHAL's data is read as more headers (as gdnsd
            # reads it), each answered, so the first connection is out of step.
            with ControlClient(path, 5, oneshot=True) as client:
                if chal_ok:
                    client.acme_dns_01_flush()
                else:
                    with pytest.raises(RequestDenied):
                        client.acme_dns_01_flush()
                with pytest.raises(RequestDenied):
                    client.reload_zones()
                assert client.status().pid == FAKE_PID
            assert daemon.challenges == []
            assert [call for call in daemon.calls if call != "status"] == (["acme", "flush"] if chal_ok else [])
        finally:
            server.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "data",
    [
        protocol.encode_challenges([CHALLENGE])[:-1] + b"!",  # no NUL after the payload
        protocol.encode_challenges([CHALLENGE]) + b"\x00",  # trailing junk
        b"\x05\x07exam" + bytes(50),  # a name running past its length
        bytes(10),  # too little for the count
        protocol.encode_challenges([CHALLENGE]).replace(b"0123", b"0 23"),  # not base64url
    ],
)
def test_challenge_data_that_does_not_parse_fails_and_the_connection_lives(served: Served, data: bytes) -> None:
    request = protocol.header_with_count(ord("C"), 1, len(data)).encode() + data
    got = raw_exchange(served.socket_path, request + protocol.info_request((3, 8, 1)).encode(), want=16)
    assert got[:8] == b"F" + bytes(7)
    assert got[8:12] == b"A\x03\x08\x01"
    assert served.daemon.challenges == []


def test_a_refused_challenge_batch_fails_for_every_client(served: Served) -> None:
    served.daemon.acme_outcome = Failed("'busy.example.' would have 201 live challenges")
    with ControlClient(served.socket_path, 5, oneshot=True) as client, pytest.raises(RequestFailed):
        client.acme_dns_01([CHALLENGE])
    if REAL_GDNSDCTL.exists():
        result = gdnsdctl(served, "acme-dns-01", "example.com", CHALLENGE.payload.decode())
        assert (result.returncode, result.stderr) == (42, "fatal: acme-dns-01 command failed\n")


def test_status_answers_while_a_reload_is_in_progress(served: Served) -> None:
    gate = threading.Event()
    served.daemon.reload_gate = gate
    done = threading.Event()

    def reload() -> None:
        with ControlClient(served.socket_path, 10) as client:
            client.reload_zones()
        done.set()

    thread = threading.Thread(target=reload)
    thread.start()
    try:
        assert wait_for(lambda: "reload" in served.daemon.calls, 2.0)
        with ControlClient(served.socket_path, 5) as client:
            assert client.status().pid == FAKE_PID
        assert not done.is_set()
    finally:
        gate.set()
        thread.join(10)
    assert done.is_set()


def test_unknown_and_response_keys_get_unk_and_the_connection_lives(served: Served) -> None:
    stream = b"Q" + bytes(7) + b"A" + bytes(7) + b"I" + bytes(7)
    got = raw_exchange(served.socket_path, stream, want=24)
    assert got[0:1] == b"U"
    assert got[8:9] == b"U"
    assert got[16:20] == b"A\x03\x08\x01"
    assert struct.unpack("=I", got[20:24])[0] == FAKE_PID


def test_bad_challenge_sizes_close_the_connection(served: Served) -> None:
    header = protocol.header_with_count(ord("C"), 0x010000, 100_000_000).encode()
    assert raw_exchange(served.socket_path, header) == b""


def test_garbage_does_not_hurt_the_server(served: Served) -> None:
    rng = random.Random(7)
    path = served.socket_path
    idle: list[socket.socket] = []
    try:
        # Many idle clients, more than max_clients: the oldest get dropped.
        for _ in range(50):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            idle.append(sock)
        sends = [
            b"I\0\0",  # truncated header, then silence
            b"C\0\0\x01" + struct.pack("=I", 0xFFFFFFFF),  # huge length
            b"C\0\0\x01" + struct.pack("=I", 60) + b"x" * 60,  # well-sized garbage
            b"\xff" * 4096,
        ]
        sends += [rng.randbytes(rng.randrange(1, 300)) for _ in range(100)]
        for data in sends:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                # Short: a random 'X' is a stop the fake daemon ACKs, held open for good.
                sock.settimeout(0.3)
                sock.connect(path)
                try:
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                    # Read whatever comes until the server closes or goes quiet.
                    for _ in range(1000):
                        if not sock.recv(65536):
                            break
                except (TimeoutError, ConnectionError):
                    pass
        with ControlClient(path, 5) as client:
            assert client.status().pid == FAKE_PID
            assert client.stats() == STATS
        assert served.server.client_count <= 32
    finally:
        for sock in idle:
            sock.close()
    assert served.daemon.challenges == []  # no garbage got through as a challenge


def test_idle_and_stalled_clients_are_timed_out(served: Served) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(served.socket_path)
        sock.sendall(b"I\0")  # a stalled, partial header
        assert sock.recv(8) == b""  # dropped after idle_timeout (2s in the fixture)
    with ControlClient(served.socket_path, 5) as client:
        assert client.status().pid == FAKE_PID
