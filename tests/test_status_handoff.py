"""``http_listen`` listeners in a replace: handed to a pygdnsd peer, told apart by address, kept, bound or closed."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

import pytest

from conftest import free_port
from pygdnsd.config.options import HttpAddress
from pygdnsd.control import tcp_listeners
from pygdnsd.errors import GdnsdError
from pygdnsd.replace import fd_passing
from pygdnsd.replace.fd_passing import Expected, FdPassError
from pygdnsd.replace.old_daemon import HandoffSet
from pygdnsd.replace.takeover import Peer
from pygdnsd.status.server import HTTP_LISTEN


def address(port: int) -> HttpAddress:
    return HttpAddress("127.0.0.1", port, socket.AF_INET)


def test_http_listeners_travel_to_a_pygdnsd_peer_and_are_told_apart_by_address(tmp_path: Path) -> None:
    dns, control, http = (tcp_listeners.open_all([address(free_port())])[0] for _ in range(3))
    lock_fd = os.open(tmp_path / "control.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "control.sock"))
    unix.listen(1)
    handoff = HandoffSet(lock_fd, unix.fileno(), [dns], {}, [control], [http])
    # gdnsd's order, then ours for a pygdnsd peer only: a gdnsd new daemon has no http_listen.
    assert handoff.fds(Peer.GDNSD) == [lock_fd, unix.fileno(), dns.sock.fileno()]
    assert handoff.fds(Peer.PYGDNSD)[2:] == [dns.sock.fileno(), control.sock.fileno(), http.sock.fileno()]
    key = Expected.address_key
    expected = Expected(
        tmp_path / "control.lock",
        tmp_path / "control.sock",
        frozenset({key(control.spec.host, control.spec.port)}),
        frozenset({key(http.spec.host, http.spec.port)}),
    )
    handed = fd_passing.adopt([os.dup(fd) for fd in handoff.fds(Peer.PYGDNSD)], expected)
    try:
        assert [s.spec for s in handed.dns] == [dns.spec]
        assert [s.spec for s in handed.tcp_control] == [control.spec]
        assert [s.spec for s in handed.http] == [http.spec]
        assert handed.http[0].sock.getsockname() == http.sock.getsockname()
    finally:
        handed.close()
        for listener in (dns, control, http):
            listener.sock.close()
        unix.close()
        os.close(lock_fd)
    assert handed.http == []


def test_two_listeners_for_one_http_address_refuse_the_handoff(tmp_path: Path) -> None:
    first = tcp_listeners.open_all([address(free_port())])[0]
    second = tcp_listeners.bind(address(first.spec.port))  # SO_REUSEPORT: the same address again
    lock_fd = os.open(tmp_path / "control.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "control.sock"))
    unix.listen(1)
    expected = Expected(
        tmp_path / "control.lock",
        tmp_path / "control.sock",
        http=frozenset({Expected.address_key(first.spec.host, first.spec.port)}),
    )
    try:
        fds = [os.dup(fd) for fd in (lock_fd, unix.fileno(), first.sock.fileno(), second.fileno())]
        with pytest.raises(FdPassError, match="two listeners for the http_listen address"):
            fd_passing.adopt(fds, expected)
    finally:
        first.sock.close()
        second.close()
        unix.close()
        os.close(lock_fd)


def test_a_new_config_keeps_binds_and_closes_http_listeners() -> None:
    kept, removed, added = free_port(), free_port(), free_port()
    handed = tcp_listeners.open_all([address(kept), address(removed)], HTTP_LISTEN)
    sockets = tcp_listeners.adopt(handed, [address(kept), address(added)], HTTP_LISTEN)
    try:
        assert [s.spec.port for s in sockets] == [kept, added]
        assert sockets[0].sock is handed[0].sock  # the same kernel socket, its queue with it
        assert handed[1].sock.fileno() == -1
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", removed), timeout=2).close()
        socket.create_connection(("127.0.0.1", added), timeout=2).close()
    finally:
        for listener in sockets:
            listener.sock.close()


def test_a_busy_address_fails_naming_the_option_and_address() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with pytest.raises(GdnsdError) as info:
            tcp_listeners.open_all([address(free_port()), address(port)], HTTP_LISTEN)
    assert f"option 'http_listen': cannot listen on HTTP listener 127.0.0.1:{port}" in str(info.value)
    assert tcp_listeners.label(address(port), HTTP_LISTEN) == f"HTTP listener 127.0.0.1:{port}"
