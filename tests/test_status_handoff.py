"""``http_listen`` listeners in a replace: their own fd role, kept, bound or closed by the new config."""

from __future__ import annotations

import os
import socket

import pytest

from conftest import free_port
from pygdnsd.config.options import HttpAddress
from pygdnsd.control import tcp_listeners
from pygdnsd.errors import GdnsdError
from pygdnsd.replace import fd_passing
from pygdnsd.replace.fd_passing import FdDescription, FdPassError, FdRole
from pygdnsd.replace.old_daemon import HandoffSet
from pygdnsd.status.server import HTTP_LISTEN


def address(port: int) -> HttpAddress:
    return HttpAddress("127.0.0.1", port, socket.AF_INET)


def test_http_listeners_travel_as_their_own_role() -> None:
    dns, control, http = (tcp_listeners.open_all([address(free_port())])[0] for _ in range(3))
    handoff = HandoffSet(0, 1, [dns], {}, [control], [http])
    descriptions = handoff.descriptions()
    assert [d.role for d in descriptions] == [FdRole.LOCK, FdRole.CONTROL, FdRole.DNS, FdRole.TCP_CONTROL, FdRole.HTTP]
    assert handoff.fds()[2:] == [dns.sock.fileno(), control.sock.fileno(), http.sock.fileno()]
    raw = fd_passing.encode_descriptions(descriptions[2:], {})
    assert fd_passing.decode_descriptions(raw) == (descriptions[2:], {})
    with pytest.raises(FdPassError):
        FdDescription(FdRole.HTTP)  # its address is how the new daemon matches it
    handed = fd_passing.adopt(descriptions[2:], [os.dup(s.sock.fileno()) for s in (dns, control, http)])
    try:
        assert [s.spec for s in handed.dns] == [dns.spec]
        assert [s.spec for s in handed.tcp_control] == [control.spec]
        assert [s.spec for s in handed.http] == [http.spec]
        assert handed.http[0].sock.getsockname() == http.sock.getsockname()
    finally:
        handed.close()
        for listener in (dns, control, http):
            listener.sock.close()
    assert handed.http == []


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
