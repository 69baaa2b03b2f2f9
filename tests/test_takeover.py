"""The takeover conversation in-process: both ends (replace.takeover, replace.old_daemon) over a socketpair, with real UDP/TCP sockets handed over."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from migrate_support import GdnsdStandIn
from pygdnsd.control import protocol
from pygdnsd.control.protocol import RequestKey
from pygdnsd.engine.stats import Stats
from pygdnsd.replace import fd_passing, old_daemon, socket_plan, stats_handoff
from pygdnsd.replace.fd_passing import Expected
from pygdnsd.replace.old_daemon import HandoffSet, Outcome
from pygdnsd.replace.takeover import (
    Peer,
    TakeoverClient,
    TakeoverError,
    TakeoverMismatch,
    TakeoverRefused,
)
from pygdnsd.transport.listeners import TCP, UDP, ListenSocket, SocketSpec

CHALLENGE = protocol.AcmeChallenge(b"\x07example\x03com\x00", b"a" * 43)
BATCH = protocol.ChallengeBatch(599, (CHALLENGE,))
STARTED = 1_700_000_000


@dataclass
class OldDaemon:
    """A stand-in for the old daemon: real sockets, a UDP reader thread, recorded calls."""

    tmp: Path
    calls: list[str] = field(default_factory=list)
    failure: str | None = None
    seen: list[bytes] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    tcp_control: list[ListenSocket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock_fd = os.open(self.tmp / "control.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(str(self.tmp / "control.sock"))
        self.control.listen(4)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.stop_reading = threading.Event()
        self.reader = threading.Thread(target=self._read_udp, daemon=True)
        self.reader.start()

    def _read_udp(self) -> None:
        self.udp.settimeout(0.02)
        deadline = time.monotonic() + 60
        while not self.stop_reading.is_set() and time.monotonic() < deadline:
            try:
                data = self.udp.recv(100)
            except TimeoutError:
                continue
            except OSError:
                return
            self.seen.append(data)
            self.stats.udp.bump("reqs")

    def spec(self, sock: socket.socket, kind: str) -> SocketSpec:
        host, port = sock.getsockname()
        return SocketSpec(host, port, socket.AF_INET, kind, 0)

    def expected(self) -> Expected:
        return Expected(self.tmp / "control.lock", self.tmp / "control.sock")

    # TakeoverSource
    def challenges(self) -> Sequence[protocol.ChallengeBatch]:
        self.calls.append("challenges")
        return [BATCH]

    def started_wall(self) -> int:
        return STARTED

    def pause_control_accept(self) -> None:
        self.calls.append("pause")

    def handoff(self) -> HandoffSet:
        self.calls.append("handoff")
        return HandoffSet(
            self.lock_fd,
            self.control.fileno(),
            [ListenSocket(self.spec(self.udp, UDP), self.udp), ListenSocket(self.spec(self.tcp, TCP), self.tcp)],
            {"watchdog_usec": 0},
            self.tcp_control,
        )

    def stop_serving(self) -> None:
        self.calls.append("stop_serving")
        self.stop_reading.set()
        self.reader.join(timeout=5.0)

    def final_stats(self) -> Mapping[str, Mapping[str, int]]:
        self.calls.append("final_stats")
        return self.stats.snapshot()

    def takeover_failed(self, reason: str) -> None:
        self.calls.append("failed")
        self.failure = reason

    def close(self) -> None:
        self.stop_reading.set()
        self.reader.join(timeout=5.0)
        os.close(self.lock_fd)
        for sock in (self.control, self.udp, self.tcp):
            sock.close()


@dataclass
class Conversation:
    old: OldDaemon
    client: TakeoverClient
    server_conn: socket.socket
    thread: threading.Thread | None = None
    outcome: Outcome | None = None

    def serve(self, expected_pid: int | None = None, step_timeout: float = 5.0) -> None:
        """The control server's part: answer INFO, then hand TAK1 to serve_takeover."""

        def run() -> None:
            reader = protocol.RequestReader()
            self.server_conn.settimeout(5.0)
            for _ in range(16):
                request = reader.next_request()
                if request is None:
                    chunk = self.server_conn.recv(protocol.HEADER_SIZE)
                    if not chunk:
                        return
                    reader.feed(chunk)
                    continue
                if request.key == RequestKey.INFO:
                    self.server_conn.sendall(protocol.info_ack(protocol.COMPAT_VERSION, 777).encode())
                    continue
                self.outcome = old_daemon.serve_takeover(
                    self.server_conn, request, self.old, expected_pid=expected_pid, step_timeout=step_timeout
                )
                return

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> Outcome | None:
        assert self.thread is not None
        self.thread.join(timeout=10.0)
        assert not self.thread.is_alive()
        return self.outcome


@pytest.fixture
def conversation(tmp_path: Path) -> Iterator[Conversation]:
    old = OldDaemon(tmp_path)
    new_end, old_end = socket.socketpair()
    client = TakeoverClient(new_end, pid=4242, step_timeout=5.0)
    yield Conversation(old, client, old_end)
    client.close()
    old_end.close()
    old.close()


def test_full_takeover_loses_no_datagram_and_carries_stats(conversation: Conversation) -> None:
    old, client = conversation.old, conversation.client
    target = old.udp.getsockname()
    tcp_waiting = socket.create_connection(old.tcp.getsockname(), timeout=5.0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total = 400
    sending_done = threading.Event()

    def send_all() -> None:
        # Spread over the whole hand-off: some reach the old reader, some the new one.
        for i in range(total):
            sender.sendto(b"q%d" % i, target)
            if i % 20 == 0:
                time.sleep(0.005)
        sending_done.set()

    conversation.serve(expected_pid=4242)
    traffic = threading.Thread(target=send_all)
    traffic.start()
    try:
        assert client.info() == (protocol.COMPAT_VERSION, 777)
        client.announce()
        assert client.peer is Peer.PYGDNSD  # both ends are ours: the mark went both ways
        assert client.challenges() == [BATCH]
        # Let the old daemon answer part of the traffic first (sequencing, bounded).
        deadline = time.monotonic() + 5
        while len(old.seen) < 50 and time.monotonic() < deadline:
            time.sleep(0.005)
        taken = client.take(old.expected())
        assert old.calls == ["challenges", "pause", "handoff"]
        assert taken.extra == {"watchdog_usec": 0}
        handed = taken.handed
        assert handed.lock_fd is not None and handed.control is not None
        assert [listener.spec.kind for listener in handed.dns] == [UDP, TCP]
        new_udp = handed.dns[0].sock
        new_seen: list[bytes] = []
        stopped: list[stats_handoff.FinalStats] = []

        def stop() -> None:
            stopped.append(client.stop_old(timeout=10.0))

        stopper = threading.Thread(target=stop)
        stopper.start()
        # The "new daemon" reads until every datagram is accounted for (bounded).
        new_udp.settimeout(0.05)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                new_seen.append(new_udp.recv(100))
            except TimeoutError:
                if sending_done.is_set() and not old.reader.is_alive() and len(old.seen) + len(new_seen) >= total:
                    break
        assert conversation.join() is Outcome.DONE
        conversation.server_conn.close()  # the old daemon exits: EOF for the client
        stopper.join(timeout=10.0)
        assert old.calls[-2:] == ["stop_serving", "final_stats"]
        assert old.failure is None

        assert sorted(old.seen + new_seen) == sorted(b"q%d" % i for i in range(total))
        final = stopped[0]
        assert final.counters["udp"]["reqs"] == len(old.seen)  # the old daemon's final counters
        assert final.started == STARTED
        carried = Stats()
        carried.absorb(final.counters)
        assert carried.udp["reqs"] == len(old.seen)

        # The TCP connection queued in the old listener is accepted by the new owner.
        new_tcp = handed.dns[1].sock
        new_tcp.settimeout(5.0)
        conn, _ = new_tcp.accept()
        with conn:
            tcp_waiting.sendall(b"hi")
            assert conn.recv(2) == b"hi"
        handed.close()
    finally:
        traffic.join(timeout=10.0)
        sender.close()
        tcp_waiting.close()


def test_new_daemon_dying_after_take_leaves_the_old_one_serving(conversation: Conversation) -> None:
    old, client = conversation.old, conversation.client
    conversation.serve()
    client.announce()
    taken = client.take(old.expected())
    # kill -9 of the new daemon: its copies vanish, the connection closes.
    taken.handed.close()
    client.close()
    assert conversation.join() is Outcome.FAILED
    assert old.calls[-1] == "failed"
    assert old.failure == "the new daemon went away"
    # The old daemon still reads its (shared) socket.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"after", old.udp.getsockname())
    deadline = time.monotonic() + 5
    while b"after" not in old.seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b"after" in old.seen


def test_a_replacement_other_than_the_spawned_one_is_told_later(conversation: Conversation) -> None:
    conversation.serve(expected_pid=999)
    with pytest.raises(TakeoverRefused) as refused:
        conversation.client.announce()
    assert refused.value.response == protocol.ResponseKey.LATR
    assert conversation.join() is Outcome.FAILED
    assert conversation.old.calls == []  # nothing had started, nothing to undo


def test_a_silent_new_daemon_times_out(conversation: Conversation) -> None:
    conversation.serve(step_timeout=0.3)
    conversation.client.announce()
    assert conversation.join() is Outcome.FAILED
    assert conversation.old.failure is not None and "silent" in conversation.old.failure


def test_take_from_another_pid_fails_and_old_resumes(conversation: Conversation) -> None:
    conversation.serve()
    conversation.client.announce()
    impostor = TakeoverClient(conversation.client.sock, pid=5, step_timeout=5.0)
    with pytest.raises(TakeoverRefused, match="RESP_FAIL"):
        impostor.take(conversation.old.expected())
    assert conversation.join() is Outcome.FAILED
    assert conversation.old.calls == ["failed"]
    assert conversation.old.failure is not None and "PID 5" in conversation.old.failure


def test_stop_before_take_is_refused(conversation: Conversation) -> None:
    conversation.serve()
    conversation.client.announce()
    with pytest.raises(TakeoverRefused):
        conversation.client.stop_old()
    assert conversation.join() is Outcome.FAILED
    assert "stop_serving" not in conversation.old.calls


def test_client_reports_an_old_daemon_that_never_exits(conversation: Conversation) -> None:
    conversation.serve()
    client = conversation.client
    client.announce()
    client.take(conversation.old.expected()).handed.close()
    with pytest.raises(TakeoverError, match="did not exit"):
        client.stop_old(timeout=0.5)  # the test never closes the old end
    assert conversation.join() is Outcome.DONE


def test_connect_to_a_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(TakeoverError, match="cannot connect"):
        TakeoverClient.connect(str(tmp_path / "nothing.sock"), pid=1)


def test_plan_sockets_reuses_matches_and_sorts_out_the_rest() -> None:
    def spec(host: str, kind: str, index: int = 0, port: int = 53) -> SocketSpec:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return SocketSpec(host, port, family, kind, index)

    def fake(s: SocketSpec) -> ListenSocket:
        return ListenSocket(s, socket.socket(s.family, socket.SOCK_DGRAM))

    handed = [fake(spec("127.0.0.1", UDP)), fake(spec("0:0::1", UDP)), fake(spec("127.0.0.2", TCP)),
              fake(spec("127.0.0.1", UDP, 1))]
    try:
        wanted = [spec("::1", UDP), spec("127.0.0.1", UDP), spec("127.0.0.3", UDP)]
        plan = socket_plan.plan_sockets(handed, wanted)
        assert [listener.spec for listener in plan.reuse] == wanted[:2]  # our spelling kept
        assert [listener.sock for listener in plan.reuse] == [handed[1].sock, handed[0].sock]
        assert [listener.spec for listener in plan.close] == [handed[2].spec, handed[3].spec]
        assert plan.open == [spec("127.0.0.3", UDP)]
    finally:
        for listener in handed:
            listener.sock.close()


# --- the other end is gdnsd 3.8.1 -----------------------------------------------------

# What gdnsd 3.8.1's new daemon sends, byte for byte (strace of its "-R start"), PID 0x4f85.
GDNSD_INFO = b"I\x03\x08\x01\x00\x00\x00\x00"
GDNSD_TAK1 = b"1\x00\x00\x00\x85\x4f\x00\x00"
GDNSD_TAK2 = b"2\x00\x00\x00\x85\x4f\x00\x00"
GDNSD_TAKE = b"T\x00\x00\x00\x85\x4f\x00\x00"
GDNSD_STOP = b"X\x00\x00\x00\x00\x00\x00\x00"
GDNSD_PID = 0x4F85


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def test_a_gdnsd_new_daemon_hears_exactly_what_gdnsd_would_say(conversation: Conversation) -> None:
    old = conversation.old
    control_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    control_tcp.bind(("127.0.0.1", 0))
    control_tcp.listen(4)
    old.stats.dns.bump("noerror", 11)
    old.stats.tcp.bump("acceptfail", 3)
    old.tcp_control.append(ListenSocket(old.spec(control_tcp, TCP), control_tcp))
    gdnsd = conversation.client.sock  # the raw end: no TakeoverClient manners
    gdnsd.settimeout(5.0)
    conversation.serve()
    try:
        gdnsd.sendall(GDNSD_INFO)
        assert read_exactly(gdnsd, 8)[:4] == b"A\x03\x08\x01"
        gdnsd.sendall(GDNSD_TAK1)
        assert read_exactly(gdnsd, 8) == b"A" + bytes(7)  # no mark: gdnsd's own answer
        gdnsd.sendall(GDNSD_TAK2)
        header = protocol.decode_header(read_exactly(gdnsd, 8))
        assert (header.key, header.count) == (ord("A"), 1)  # one challenge batch
        assert read_exactly(gdnsd, header.d) == b"\x3a\x00\x57\x02\x01" + protocol.encode_challenges([CHALLENGE])
        gdnsd.sendall(GDNSD_TAKE)
        raw, fds = fd_passing.recv_with_fds(gdnsd, 8, 16, 5.0)
        try:
            # v: the count, d: 0; the lock, the control socket, the DNS sockets and no tcp_control.
            assert raw == b"A\x00\x00\x04" + bytes(4)
            handed = fd_passing.adopt(fds, old.expected())
            assert [s.spec.kind for s in handed.dns] == [UDP, TCP] and handed.tcp_control == []
            handed.close()
        except BaseException:
            fd_passing.close_fds(fds)
            raise
        gdnsd.sendall(GDNSD_STOP)
        assert read_exactly(gdnsd, 8) == b"A" + bytes(7)
        push = protocol.decode_header(read_exactly(gdnsd, 8))
        assert (push.key, push.d) == (ord("s"), 36 * 8)
        slots = protocol.decode_stats_handoff(read_exactly(gdnsd, push.d))
        # gdnsd's order: noerror is slot 12, acceptfail 34, the start time last.
        assert (slots[12], slots[34], slots[35]) == (11, 3, STARTED)
        assert slots[22] == len(old.seen)  # udp reqs
        assert sum(slots[:35]) == 11 + 3 + len(old.seen)
    finally:
        control_tcp.close()
    assert conversation.join() is Outcome.DONE


@pytest.fixture
def gdnsd_pair(tmp_path: Path) -> Iterator[tuple[GdnsdStandIn, TakeoverClient, socket.socket]]:
    new_end, old_end = socket.socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    client = TakeoverClient(new_end, pid=GDNSD_PID, step_timeout=5.0)
    stand_in = GdnsdStandIn(tmp_path, [udp], started=STARTED)
    stand_in.open()
    yield stand_in, client, old_end
    client.close()
    old_end.close()
    stand_in.close()
    udp.close()


def expected_in(tmp: Path) -> Expected:
    return Expected(tmp / "control.lock", tmp / "control.sock")


def test_our_new_daemon_takes_over_from_a_gdnsd_old_one(
    gdnsd_pair: tuple[GdnsdStandIn, TakeoverClient, socket.socket],
) -> None:
    old, client, old_end = gdnsd_pair
    thread = old.converse(old_end)
    assert client.info() == ((3, 8, 1), os.getpid())
    client.announce()
    assert client.peer is Peer.GDNSD and client.old_kind == "gdnsd 3.8.1"
    # Our TAK1 carries the mark; gdnsd ignores it (measured) and answers zeros.
    assert old.heard[1] == b"1p\x00\x01" + struct.pack("=I", GDNSD_PID)
    taken = client.take(expected_in(old.run_dir))
    try:
        assert taken.extra == {}
        assert [(s.spec.host, s.spec.kind, s.spec.index) for s in taken.handed.dns] == [("127.0.0.1", UDP, 0)]
        final = client.stop_old(timeout=5.0)
    finally:
        taken.handed.close()
    thread.join(5.0)
    assert final.started == STARTED
    assert final.counters["udp"]["recvfail"] == 1 and final.counters["tcp"]["acceptfail"] == 35
    assert final.counters["stats"]["noerror"] == 13 and final.counters["udp"]["reqs"] == 23


def test_another_major_version_is_refused_before_anything_is_locked(
    gdnsd_pair: tuple[GdnsdStandIn, TakeoverClient, socket.socket],
) -> None:
    old, client, old_end = gdnsd_pair
    old.version = b"\x04\x00\x00"
    thread = old.converse(old_end)
    with pytest.raises(TakeoverMismatch, match=r"reports version 4\.0\.0, whose takeover this daemon does not speak"):
        client.info()
    client.close()
    thread.join(5.0)
    assert old.asked() == [b"I"]  # no TAK1: the old daemon was never locked


def test_a_take_answer_gdnsd_never_sends_is_refused_and_its_descriptors_closed(
    gdnsd_pair: tuple[GdnsdStandIn, TakeoverClient, socket.socket],
) -> None:
    old, client, old_end = gdnsd_pair
    old.take_data = b'{"surprise": 1}'
    thread = old.converse(old_end)
    client.info()
    client.announce()
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(TakeoverMismatch, match=r"15 bytes of data, which gdnsd 3\.8\.1 never sends"):
        client.take(expected_in(old.run_dir))
    assert len(os.listdir("/proc/self/fd")) == before
    client.close()
    thread.join(5.0)
    assert b"X" not in old.asked()  # never asked to stop


def test_an_unexpected_socket_refuses_the_takeover_before_stop(
    gdnsd_pair: tuple[GdnsdStandIn, TakeoverClient, socket.socket],
) -> None:
    old, client, old_end = gdnsd_pair
    stray = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old.extra_fds.append(stray.fileno())
    thread = old.converse(old_end)
    client.info()
    client.announce()
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(fd_passing.FdPassError, match="descriptor #4 handed over is an AF_UNIX/SOCK_DGRAM socket"):
        client.take(expected_in(old.run_dir))
    assert len(os.listdir("/proc/self/fd")) == before
    client.close()
    thread.join(5.0)
    stray.close()
    assert b"X" not in old.asked()
