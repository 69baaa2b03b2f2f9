"""replace.fd_passing: descriptors over a socketpair, real DNS-like sockets, and every failure closing what arrived."""

from __future__ import annotations

import array
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygdnsd.replace import fd_passing
from pygdnsd.replace.fd_passing import FdDescription, FdPassError, FdRole
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


def test_descriptions_round_trip() -> None:
    descriptions = [
        FdDescription(FdRole.LOCK),
        FdDescription(FdRole.CONTROL),
        FdDescription(FdRole.DNS, SocketSpec("::1", 53, socket.AF_INET6, UDP, 1)),
        FdDescription(FdRole.DNS, SocketSpec("127.0.0.1", 5353, socket.AF_INET, TCP, 0)),
    ]
    raw = fd_passing.encode_descriptions(descriptions, {"started": 12.5})
    assert fd_passing.decode_descriptions(raw) == (descriptions, {"started": 12.5})


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b'{"fds": 3}',
        b'{"fds": [{"role": "weird"}]}',
        b'{"fds": [{"role": "dns"}]}',
        b'{"fds": [{"role": "dns", "spec": {"host": "x", "port": 53, "family": 2, "kind": "udp", "index": 0}}]}',
        b'{"fds": [{"role": "dns", "spec": {"host": "::1", "port": "53", "family": 10, "kind": "udp", "index": 0}}]}',
        b'{"fds": [{"role": "dns", "spec": {"host": "::1", "port": 53, "family": 10, "kind": "sctp", "index": 0}}]}',
    ],
)
def test_malformed_descriptions_are_refused(raw: bytes) -> None:
    with pytest.raises(FdPassError):
        fd_passing.decode_descriptions(raw)


def test_a_spec_goes_with_dns_only() -> None:
    with pytest.raises(FdPassError):
        FdDescription(FdRole.DNS)
    with pytest.raises(FdPassError):
        FdDescription(FdRole.LOCK, SocketSpec("::1", 53, socket.AF_INET6, UDP, 0))


def test_real_sockets_survive_the_handoff_with_their_queues(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    left, right = pair
    lock_fd = os.open(tmp_path / "control.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(tmp_path / "control.sock"))
    control.listen(4)
    udp, udp6, tcp = bound_udp(), bound_udp("::1"), listening_tcp()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp_client = socket.create_connection(tcp.getsockname(), timeout=5.0)
    handed: fd_passing.HandedOver | None = None
    try:
        # Queued before the hand-off: must be readable by the receiver after it.
        client.sendto(b"queued datagram", udp.getsockname())
        descriptions = [
            FdDescription(FdRole.LOCK),
            FdDescription(FdRole.CONTROL),
            FdDescription(FdRole.DNS, spec_of(udp, UDP)),
            FdDescription(FdRole.DNS, spec_of(udp6, UDP)),
            FdDescription(FdRole.DNS, spec_of(tcp, TCP)),
        ]
        meta = fd_passing.encode_descriptions(descriptions, {})
        fd_passing.send_with_fds(left, meta, [lock_fd, control.fileno(), udp.fileno(), udp6.fileno(), tcp.fileno()])
        # The sender lets go of everything, as the old daemon does by exiting.
        os.close(lock_fd)
        for sock in (control, udp, udp6, tcp):
            sock.close()

        raw, fds = fd_passing.recv_with_fds(right, len(meta), max_fds=8, timeout=5.0)
        got_descriptions, _ = fd_passing.decode_descriptions(raw)
        handed = fd_passing.adopt(got_descriptions, fds)

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
        assert [listener.spec for listener in handed.dns] == [d.spec for d in descriptions[2:]]
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


def test_adopt_refuses_a_socket_that_is_not_what_it_claims() -> None:
    udp = bound_udp()
    tcp = listening_tcp()
    r, w = os.pipe()
    try:
        udp_spec = spec_of(udp, UDP)
        wrong_kind = FdDescription(FdRole.DNS, SocketSpec(udp_spec.host, udp_spec.port, udp_spec.family, TCP, 0))
        wrong_port = FdDescription(FdRole.DNS, SocketSpec(udp_spec.host, udp_spec.port + 1, udp_spec.family, UDP, 0))
        for description in (wrong_kind, wrong_port):
            before = open_fd_count()
            dup_udp, dup_tcp = os.dup(udp.fileno()), os.dup(tcp.fileno())
            with pytest.raises(FdPassError):
                fd_passing.adopt([FdDescription(FdRole.DNS, spec_of(tcp, TCP)), description], [dup_tcp, dup_udp])
            assert open_fd_count() == before  # both closed, the good one too
        before = open_fd_count()
        with pytest.raises(FdPassError, match="not a socket"):
            fd_passing.adopt([FdDescription(FdRole.CONTROL)], [os.dup(r)])
        assert open_fd_count() == before
        with pytest.raises(FdPassError, match="arrived for"):
            fd_passing.adopt([], [os.dup(r)])
        assert open_fd_count() == before
    finally:
        udp.close()
        tcp.close()
        fd_passing.close_fds([r, w])


def test_tcp_control_listeners_are_adopted_apart_from_the_dns_sockets() -> None:
    dns, control = listening_tcp(), listening_tcp()
    descriptions = [
        FdDescription(FdRole.DNS, spec_of(dns, TCP)),
        FdDescription(FdRole.TCP_CONTROL, spec_of(control, TCP)),
    ]
    raw = fd_passing.encode_descriptions(descriptions, {})
    assert fd_passing.decode_descriptions(raw) == (descriptions, {})
    with pytest.raises(FdPassError):
        FdDescription(FdRole.TCP_CONTROL)  # its address is how the new daemon matches it
    handed = fd_passing.adopt(descriptions, [os.dup(dns.fileno()), os.dup(control.fileno())])
    try:
        assert [listener.spec for listener in handed.dns] == [spec_of(dns, TCP)]
        assert [listener.spec for listener in handed.tcp_control] == [spec_of(control, TCP)]
        assert handed.tcp_control[0].sock.getsockname() == control.getsockname()
    finally:
        handed.close()
        dns.close()
        control.close()
    # A description that lies about the address is refused, as for DNS sockets.
    other = listening_tcp()
    try:
        wrong = SocketSpec("127.0.0.1", spec_of(other, TCP).port + 1, socket.AF_INET, TCP, 0)
        before = open_fd_count()
        with pytest.raises(FdPassError):
            fd_passing.adopt([FdDescription(FdRole.TCP_CONTROL, wrong)], [os.dup(other.fileno())])
        assert open_fd_count() == before
    finally:
        other.close()
