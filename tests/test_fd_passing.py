"""replace.fd_passing: descriptors over a socketpair, real DNS-like sockets, and every failure closing what arrived."""

from __future__ import annotations

import array
import fcntl
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pygdnsd.replace import fd_passing
from pygdnsd.replace.fd_passing import Expected, FdPassError
from pygdnsd.transport.listeners import TCP, UDP, SocketSpec


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield left, right
    left.close()
    right.close()


def bound_udp(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def listening_tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def spec_of(sock: socket.socket, kind: str, index: int = 0) -> SocketSpec:
    host, port = sock.getsockname()[:2]
    return SocketSpec(host, port, sock.family, kind, index)


def test_bytes_and_fds_round_trip_exactly(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    r, w = os.pipe()
    try:
        fd_passing.send_with_fds(left, b"hello" + b"NEXT", [r, w])
        data, fds = fd_passing.recv_with_fds(right, 5, max_fds=2, timeout=5.0)
        assert data == b"hello"
        assert len(fds) == 2
        # Close-on-exec from the moment they arrived.
        assert all(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC for fd in fds)
        os.write(fds[1], b"x")
        assert os.read(r, 1) == b"x"
        fd_passing.close_fds(fds)
        # The bytes after our message were not consumed.
        assert right.recv(10) == b"NEXT"
    finally:
        os.close(r)
        os.close(w)


def test_more_fds_than_one_sendmsg_holds(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    r, w = os.pipe()
    dups = [os.dup(w) for _ in range(300)]
    try:
        data = b"x" * 20
        sender = threading.Thread(target=fd_passing.send_with_fds, args=(left, data, dups))
        sender.start()
        got, fds = fd_passing.recv_with_fds(right, len(data), max_fds=300, timeout=5.0)
        sender.join(timeout=5.0)
        assert got == data
        assert len(fds) == 300
        assert {os.fstat(fd).st_ino for fd in fds} == {os.fstat(w).st_ino}
        fd_passing.close_fds(fds)
    finally:
        fd_passing.close_fds([r, w, *dups])


def test_too_few_bytes_for_the_fd_batches_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    left, _ = pair
    r, w = os.pipe()
    try:
        with pytest.raises(FdPassError, match="bytes of data"):
            fd_passing.send_with_fds(left, b"", [r])
    finally:
        fd_passing.close_fds([r, w])


def test_truncated_ancillary_data_closes_everything(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    r, w = os.pipe()
    dups = [os.dup(w) for _ in range(253)]  # SCM_MAX_FD: more than our receive buffer holds
    try:
        before = open_fd_count()
        left.sendmsg([b"abcd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", dups))])
        with pytest.raises(FdPassError, match="MSG_CTRUNC"):
            fd_passing.recv_with_fds(right, 4, max_fds=300, timeout=5.0)
        assert open_fd_count() == before
    finally:
        fd_passing.close_fds([r, w, *dups])


def test_more_fds_than_expected_closes_everything(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    r, w = os.pipe()
    try:
        before = open_fd_count()
        fd_passing.send_with_fds(left, b"abcd", [r, w, r])
        with pytest.raises(FdPassError, match="at most 2"):
            fd_passing.recv_with_fds(right, 4, max_fds=2, timeout=5.0)
        assert open_fd_count() == before
    finally:
        fd_passing.close_fds([r, w])


def test_eof_and_timeout_close_what_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    r, w = os.pipe()
    try:
        before = open_fd_count()
        fd_passing.send_with_fds(left, b"ab", [r])
        with pytest.raises(FdPassError, match="timed out after 2 of 10"):
            fd_passing.recv_with_fds(right, 10, max_fds=2, timeout=0.2)
        assert open_fd_count() == before
        fd_passing.send_with_fds(left, b"ab", [w])
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(FdPassError, match="closed after 2 of 10"):
            fd_passing.recv_with_fds(right, 10, max_fds=2, timeout=5.0)
        assert open_fd_count() == before
    finally:
        fd_passing.close_fds([r, w])


@dataclass
class OldSide:
    """What an old daemon hands over: its lock, its control listener, some sockets (closed by ``close``)."""

    tmp: Path
    lock_fd: int = -1
    control: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))

    def __post_init__(self) -> None:
        self.lock_fd = os.open(self.tmp / "control.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.control.bind(str(self.tmp / "control.sock"))
        self.control.listen(4)

    def expected(self, tcp_control: tuple[socket.socket, ...] = ()) -> Expected:
        keys = frozenset(Expected.address_key(*sock.getsockname()[:2]) for sock in tcp_control)
        return Expected(self.tmp / "control.lock", self.tmp / "control.sock", keys)

    def dups(self, *socks: socket.socket) -> list[int]:
        """Copies of the lock, the control listener and ``socks``, as the receiver gets them."""
        return [os.dup(self.lock_fd), os.dup(self.control.fileno()), *(os.dup(s.fileno()) for s in socks)]

    def close(self) -> None:
        os.close(self.lock_fd)
        self.control.close()


@pytest.fixture
def old_side(tmp_path: Path) -> Iterator[OldSide]:
    side = OldSide(tmp_path)
    yield side
    side.close()


def test_real_sockets_survive_the_handoff_with_their_queues(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    left, right = pair
    old = OldSide(tmp_path)
    udp, udp6, tcp = bound_udp(), bound_udp("::1"), listening_tcp()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp_client = socket.create_connection(tcp.getsockname(), timeout=5.0)
    handed: fd_passing.HandedOver | None = None
    try:
        # Queued before the hand-off: must be readable by the receiver after it.
        client.sendto(b"queued datagram", udp.getsockname())
        header = b"A\0\0\x05" + bytes(4)  # gdnsd's TAKE ACK: a count, no data, descriptors on it
        fd_passing.send_with_fds(
            left, header, [old.lock_fd, old.control.fileno(), udp.fileno(), udp6.fileno(), tcp.fileno()]
        )
        # The sender lets go of everything, as the old daemon does by exiting.
        old.close()
        for sock in (udp, udp6, tcp):
            sock.close()

        raw, fds = fd_passing.recv_with_fds(right, len(header), max_fds=8, timeout=5.0)
        assert raw == header
        handed = fd_passing.adopt(fds, Expected(tmp_path / "control.lock", tmp_path / "control.sock"))

        assert handed.lock_fd is not None
        with pytest.raises(BlockingIOError):  # the lock travelled with the descriptor
            other = os.open(tmp_path / "control.lock", os.O_RDWR)
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(other)
        assert handed.control is not None
        assert handed.control.getsockname() == str(tmp_path / "control.sock")
        received_udp = handed.dns[0].sock
        received_udp.settimeout(5.0)
        assert received_udp.recvfrom(100)[0] == b"queued datagram"
        # Each socket says what it is: family, type and address, from the socket itself.
        assert [(s.spec.host, s.spec.family, s.spec.kind, s.spec.index) for s in handed.dns] == [
            ("127.0.0.1", socket.AF_INET, UDP, 0),
            ("::1", socket.AF_INET6, UDP, 0),
            ("127.0.0.1", socket.AF_INET, TCP, 0),
        ]
        received_tcp = handed.dns[2].sock
        received_tcp.settimeout(5.0)
        conn, _ = received_tcp.accept()  # the connection waiting in the accept queue
        with conn:
            tcp_client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
    finally:
        client.close()
        tcp_client.close()
        if handed is not None:
            handed.close()


def test_sockets_of_one_address_are_numbered_in_the_order_they_came(old_side: OldSide) -> None:
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    second.bind(first.getsockname())
    tcp = listening_tcp()
    try:
        handed = fd_passing.adopt(old_side.dups(first, tcp, second), old_side.expected())
        try:
            assert [(s.spec.kind, s.spec.index) for s in handed.dns] == [(UDP, 0), (TCP, 0), (UDP, 1)]
        finally:
            handed.close()
    finally:
        for sock in (first, second, tcp):
            sock.close()


def test_tcp_control_listeners_are_told_apart_by_their_configured_address(old_side: OldSide) -> None:
    dns, control = listening_tcp(), listening_tcp()
    handed = fd_passing.adopt(old_side.dups(dns, control), old_side.expected(tcp_control=(control,)))
    try:
        assert [listener.spec for listener in handed.dns] == [spec_of(dns, TCP)]
        assert [listener.spec for listener in handed.tcp_control] == [spec_of(control, TCP)]
        assert handed.tcp_control[0].sock.getsockname() == control.getsockname()
    finally:
        handed.close()
        dns.close()
        control.close()


def unbound_udp() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def connected_udp() -> socket.socket:
    sock = bound_udp()
    sock.connect(("127.0.0.1", 9))
    return sock


def idle_tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def unix_datagram() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)


def raw_icmp() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (unbound_udp, "not bound"),
        (connected_udp, "is connected"),
        (idle_tcp, "not listening"),
        (unix_datagram, "AF_UNIX/SOCK_DGRAM socket, not a UDP or TCP listener"),
        (raw_icmp, "SOCK_RAW socket, not a UDP or TCP listener"),
    ],
)
def test_a_socket_no_gdnsd_listens_with_refuses_the_whole_handoff(
    old_side: OldSide, make: Callable[[], socket.socket], why: str
) -> None:
    good, odd = listening_tcp(), make()
    try:
        before = open_fd_count()
        with pytest.raises(FdPassError, match=f"descriptor #4 .*{why}"):
            fd_passing.adopt(old_side.dups(good, odd), old_side.expected())
        assert open_fd_count() == before  # every copy closed, the good ones too
    finally:
        good.close()
        odd.close()


def test_a_lock_or_control_socket_that_is_not_ours_refuses_the_handoff(old_side: OldSide, tmp_path: Path) -> None:
    r, w = os.pipe()
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    stranger = OldSide(elsewhere)
    try:
        before = open_fd_count()
        with pytest.raises(FdPassError, match="not the lock file"):
            fd_passing.adopt(stranger.dups(), old_side.expected())
        with pytest.raises(FdPassError, match="not the lock file"):
            fd_passing.adopt([os.dup(r), os.dup(old_side.control.fileno())], old_side.expected())
        with pytest.raises(FdPassError, match="bound to"):
            fd_passing.adopt([os.dup(old_side.lock_fd), os.dup(stranger.control.fileno())], old_side.expected())
        with pytest.raises(FdPassError, match="#2 handed over is not a socket"):
            fd_passing.adopt([os.dup(old_side.lock_fd), os.dup(r)], old_side.expected())
        with pytest.raises(FdPassError, match="at least the lock and the control socket"):
            fd_passing.adopt([os.dup(old_side.lock_fd)], old_side.expected())
        assert open_fd_count() == before
    finally:
        stranger.close()
        fd_passing.close_fds([r, w])
