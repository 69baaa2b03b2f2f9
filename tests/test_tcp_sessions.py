"""TCP serving with the real engine: DSO sessions, PROXY headers, tcp_pad and tcp_timeout per listener.

What gdnsd 3.8.1's 029tcp_dso/058dso.t and 004misc/019bad.t check on the
wire, and what they cannot reach: idleness across DSO keepalives, the
shutdown of a session, a PROXY header in pieces, the relayed client as the
engine sees it (the reflect plugin answers with it).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port
from daemon_support import wait_for
from engine_support import DEFAULT_ZONES
from pygdnsd.config.options import ListenAddress
from pygdnsd.engine import dso
from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.engine.stats import Stats
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.transport import proxy, tcp
from pygdnsd.transport.listeners import open_listeners
from pygdnsd.transport.tcp import TcpLimits, TcpServer
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.settings import ZoneSettings
from test_transport import closed_by_server, frame, read_frame

WAIT = 5.0
KEEPALIVE_OPTION, PADDING_OPTION = 11, 12
OPT = b"\x00\x00\x29\x04\x00\x00\x00\x00\x00\x00\x00"


def dns_query(
    name: bytes = b"\x03www\x07example\x03com\x00", edns: bytes = OPT, ident: int = 0x4242, qtype: int = 1
) -> bytes:
    return struct.pack("!HBBHHHH", ident, 0, 0, 1, 0, 0, 1 if edns else 0) + name + struct.pack("!HH", qtype, 1) + edns


def keepalive(ident: int = 7, extra: bytes = b"") -> bytes:
    return struct.pack("!HBBHHHH HHII", ident, 0x30, 0, 0, 0, 0, 0, 1, 8, 1000, 2000) + extra


def options_of(answer: bytes) -> dict[int, bytes]:
    """The options of the OPT record ending ``answer`` (our answers put it last)."""
    at = answer.rindex(b"\x00\x00\x29\x04\x00")
    rdata = answer[at + 11 :]
    found = {}
    pos = 0
    while pos < len(rdata):
        code, length = struct.unpack_from("!HH", rdata, pos)
        found[code] = rdata[pos + 4 : pos + 4 + length]
        pos += 4 + length
    return found


class ReflectClient:
    """A resolver plugin answering every DYNA with the client address the engine was given."""

    def check(self, plugin: str, resource: str, dync: bool) -> None:
        pass

    def resolve(self, plugin: str, resource: str, client: ClientInfo) -> DynamicResult:
        if resource == "boom":
            raise RuntimeError("a plugin failed")
        if len(client.address) == 4:
            return DynamicResult(ttl=60, v4=(client.address,))
        return DynamicResult(ttl=60, v6=(client.address,))


class Served:
    """A TcpServer on one loopback port, answering from the engine over ``DEFAULT_ZONES`` + a reflect name."""

    def __init__(self, tmp_path: Path, limits: TcpLimits, disable_tcp_dso: bool = False) -> None:
        zones = dict(DEFAULT_ZONES)
        zones["example.org"] = "$TTL 300\n@ SOA ns hostmaster 1 7200 1800 259200 900\n@ NS ns\nns A 192.0.2.9\nwho DYNA reflect\nboom DYNA reflect!boom\n"
        zones_dir = tmp_path / "zones"
        zones_dir.mkdir(parents=True)
        for apex, text in zones.items():
            (zones_dir / apex).write_text(text)
        reflect = ReflectClient()
        self.stats = Stats()
        settings = EngineSettings(disable_tcp_dso=disable_tcp_dso)
        engine = Responder(load_zones(zones_dir, ZoneSettings(), reflect), settings, self.stats, dynamic=reflect)
        self.port = free_port()
        self.listeners = open_listeners([ListenAddress("127.0.0.1", self.port, udp_threads=0, tcp_threads=1)])
        self.server = TcpServer([(listener, limits) for listener in self.listeners], engine, self.stats)
        self.server.start()
        self.clients: list[socket.socket] = []

    def connect(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self.clients.append(client)
        return client

    def counts(self, **wanted: int) -> bool:
        """Whether the TCP counters named reached these values (they move as the server thread gets to them)."""
        return wait_for(lambda: all(self.stats.tcp[name] == value for name, value in wanted.items()), WAIT)

    def close(self) -> None:
        for client in self.clients:  # first: an open DSO session would hold stop() for its grace
            client.close()
        self.server.stop()
        for listener in self.listeners:
            listener.sock.close()


PLAIN = TcpLimits(idle_timeout=30.0, max_clients=16)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Served]]:
    started: list[Served] = []

    class Started(Served):
        def __init__(self, limits: TcpLimits = PLAIN, **kw: bool) -> None:
            super().__init__(tmp_path / f"zones{len(started)}", limits, **kw)
            started.append(self)

    yield Started
    for served in started:
        served.close()


# -- DSO -----------------------------------------------------------------------


def test_a_keepalive_opens_a_session_whose_answers_carry_no_keepalive_option(serve: type[Served]) -> None:
    served = serve(TcpLimits(idle_timeout=30.0, max_clients=16, tcp_timeout=15))
    client = served.connect()
    client.sendall(frame(dns_query()))
    assert options_of(read_frame(client)) == {KEEPALIVE_OPTION: struct.pack("!H", 150)}
    client.sendall(frame(keepalive(ident=9)))
    assert read_frame(client) == struct.pack("!HBBHHHH HHII", 9, 0xB0, 0, 0, 0, 0, 0, 1, 8, 0xFFFFFFFF, 15000)
    client.sendall(frame(dns_query()))
    assert options_of(read_frame(client)) == {}
    assert served.counts(dso_estab=1, reqs=2)
    # A second keepalive in the session is answered, not counted again.
    client.sendall(frame(keepalive()))
    assert read_frame(client)[12:14] == b"\x00\x01"
    assert served.counts(dso_estab=1, reqs=2)


def test_dso_messages_in_one_write_are_answered_in_order(serve: type[Served]) -> None:
    served = serve()
    client = served.connect()
    unknown = struct.pack("!HBBHHHH HH", 11, 0x30, 0, 0, 0, 0, 0, 0xFBFF, 0)
    client.sendall(frame(unknown) + frame(keepalive(ident=12)) + frame(dns_query(ident=13)))
    assert read_frame(client)[:4] == struct.pack("!HBB", 11, 0xB0, dso.RCODE_DSOTYPENI)
    assert read_frame(client)[:4] == struct.pack("!HBB", 12, 0xB0, 0)
    answer = read_frame(client)
    assert answer[:2] == struct.pack("!H", 13) and options_of(answer) == {}
    assert served.counts(dso_typeni=1, dso_estab=1, reqs=1)


@pytest.mark.parametrize(
    "message",
    [
        keepalive(ident=0),
        struct.pack("!HBBHHHH HH", 1, 0x30, 0, 0, 0, 0, 0, 2, 2) + b"\x00\x00",
        keepalive(extra=b"\x00\x03\x00\x03ab"),
    ],
    ids=["unidirectional", "retry-delay", "overrun"],
)
def test_a_dso_protocol_error_aborts_the_connection(serve: type[Served], message: bytes) -> None:
    served = serve()
    client = served.connect()
    client.sendall(frame(message))
    assert closed_by_server(client)
    assert served.counts(dso_protoerr=1, close_s_err=1, reqs=0)
    assert served.stats.dns["dropped"] == 0


def test_an_edns_keepalive_inside_a_session_aborts_it(serve: type[Served]) -> None:
    served = serve()
    client = served.connect()
    client.sendall(frame(keepalive()))
    read_frame(client)
    with_keepalive = OPT[:-2] + b"\x00\x06\x00\x0b\x00\x02\x01\x72"
    client.sendall(frame(dns_query(edns=with_keepalive)))
    assert closed_by_server(client)
    assert served.counts(dso_protoerr=1, close_s_err=1, reqs=1)
    assert (served.stats.dns["dropped"], served.stats.dns["edns"]) == (1, 1)


def test_with_disable_tcp_dso_a_keepalive_is_a_notimp_query(serve: type[Served]) -> None:
    served = serve(TcpLimits(idle_timeout=30.0, max_clients=16, disable_tcp_dso=True), disable_tcp_dso=True)
    client = served.connect()
    client.sendall(frame(keepalive(ident=5)))
    answer = read_frame(client)
    assert answer[:4] == struct.pack("!HBB", 5, 0xB0, 4)
    client.sendall(frame(dns_query()))
    assert KEEPALIVE_OPTION in options_of(read_frame(client))
    assert served.counts(reqs=2, dso_estab=0)


def test_keepalives_alone_do_not_keep_a_connection_open(serve: type[Served]) -> None:
    # gdnsd: a DSO keepalive is no transaction; only queries reset the idle timer.
    served = serve(TcpLimits(idle_timeout=0.6, max_clients=16))
    client = served.connect()
    opened = time.monotonic()
    with pytest.raises(ConnectionError):
        while time.monotonic() - opened < WAIT:
            client.sendall(frame(keepalive()))
            read_frame(client)
            time.sleep(0.1)
    assert time.monotonic() - opened < 2.0
    assert served.counts(close_s_ok=1)


def test_queries_in_a_session_keep_it_open(serve: type[Served]) -> None:
    served = serve(TcpLimits(idle_timeout=0.6, max_clients=16))
    client = served.connect()
    client.sendall(frame(keepalive()))
    read_frame(client)
    for _ in range(10):  # 1.5 s, past the idle timeout
        client.sendall(frame(dns_query()))
        read_frame(client)
        time.sleep(0.15)
    assert served.stats.tcp["close_s_ok"] == 0


def test_at_stop_a_session_is_told_to_close_and_may_finish(serve: type[Served]) -> None:
    # 058dso.t T32-41: the unidirectional keepalive with inactivity 0, then a
    # query still answered while the client winds down.
    served = serve(TcpLimits(idle_timeout=30.0, max_clients=16, tcp_pad=True))
    session, plain = served.connect(), served.connect()
    session.sendall(frame(keepalive()))
    read_frame(session)
    plain.sendall(frame(dns_query()))
    read_frame(plain)
    assert served.counts(reqs=1, dso_estab=1)
    served.server.request_stop()
    assert read_frame(session) == dso.closing_keepalive(True)
    assert closed_by_server(plain)  # outside a session: closed at once
    session.sendall(frame(dns_query(ident=77)))
    answer = read_frame(session)
    assert answer[:2] == struct.pack("!H", 77) and len(answer) == 468
    started = time.monotonic()
    session.close()
    served.server.stop()
    assert time.monotonic() - started < tcp.DSO_GRACE_SECONDS
    assert served.counts(close_c=1, close_s_ok=1, close_s_err=0)


def test_a_session_that_stays_open_is_dropped_after_the_grace(
    serve: type[Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcp, "DSO_GRACE_SECONDS", 0.3)
    served = serve()
    session = served.connect()
    session.sendall(frame(keepalive()))
    read_frame(session)
    served.server.stop()
    assert read_frame(session) == dso.closing_keepalive(False)
    assert closed_by_server(session)
    assert served.counts(close_s_err=1)


# -- PROXY ---------------------------------------------------------------------

PROXIED = TcpLimits(idle_timeout=30.0, max_clients=16, tcp_proxy=True, tcp_pad=True)
WHO = b"\x03who\x07example\x03org\x00"


def test_the_relayed_client_is_the_one_the_engine_sees(serve: type[Served]) -> None:
    served = serve(PROXIED)
    client = served.connect()
    client.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 5353 53\r\n" + frame(dns_query(WHO)))
    answer = read_frame(client)
    assert socket.inet_aton("198.51.100.7") in answer
    assert len(answer) % 468 == 0  # tcp_pad follows tcp_proxy
    assert served.counts(conns=1, proxy=1, proxy_fail=0, reqs=1)


def test_a_failure_is_logged_with_the_relayed_client(serve: type[Served], caplog: pytest.LogCaptureFixture) -> None:
    served = serve(PROXIED)
    client = served.connect()
    client.sendall(b"PROXY TCP4 198.51.100.77 127.0.0.1 5353 53\r\n" + frame(dns_query(b"\x04boom\x07example\x03org\x00")))
    assert closed_by_server(client)
    assert served.counts(close_s_err=1)
    assert "error answering a TCP query from 198.51.100.77" in caplog.text


def test_a_v2_header_relays_an_ipv6_client(serve: type[Served]) -> None:
    served = serve(PROXIED)
    client = served.connect()
    source = socket.inet_pton(socket.AF_INET6, "2001:db8::99")
    body = source + bytes(15) + b"\x01" + struct.pack("!HH", 4000, 53)
    header = proxy.V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", len(body)) + body
    client.sendall(header + frame(dns_query(WHO, qtype=28)))
    assert source in read_frame(client)
    assert served.stats.dns["v6"] == 1  # the engine counts the relayed family


def test_local_keeps_the_proxys_own_address(serve: type[Served]) -> None:
    served = serve(PROXIED)
    client = served.connect()
    client.sendall(proxy.V2_SIGNATURE + b"\x20\x00\x00\x00" + frame(dns_query(WHO)))
    assert socket.inet_aton("127.0.0.1") in read_frame(client)


def test_a_header_in_pieces_is_waited_for(serve: type[Served]) -> None:
    served = serve(PROXIED)
    client = served.connect()
    header = b"PROXY TCP6 2001:db8::5 ::1 5353 53\r\n"
    query = frame(dns_query(WHO, qtype=28))
    for piece in (header[:5], header[5:20], header[20:] + query[:7]):
        client.sendall(piece)
        time.sleep(0.05)  # separate reads are what is tested
    client.sendall(query[7:])
    assert socket.inet_pton(socket.AF_INET6, "2001:db8::5") in read_frame(client)


@pytest.mark.parametrize(
    "data",
    [frame(dns_query()), b"PROXY UNKNOWN\r\n" + frame(dns_query()), b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n"],
    ids=["no-header", "unknown", "lf"],
)
def test_a_refused_header_drops_the_connection(serve: type[Served], data: bytes) -> None:
    served = serve(PROXIED)
    client = served.connect()
    client.sendall(data)
    assert closed_by_server(client)
    assert served.counts(conns=1, proxy=1, proxy_fail=1, close_s_err=1, reqs=0)


def test_a_proxy_connection_closed_inside_its_header(serve: type[Served]) -> None:
    served = serve(PROXIED)
    client = served.connect()
    client.sendall(b"PROXY TCP4 10.0")
    client.shutdown(socket.SHUT_WR)
    assert closed_by_server(client)
    assert served.counts(proxy=1, proxy_fail=0, recvfail=1, close_s_err=1)


def test_a_proxy_connection_closed_before_any_byte_is_a_client_close(serve: type[Served]) -> None:
    served = serve(PROXIED)
    client = served.connect()
    client.shutdown(socket.SHUT_WR)
    assert closed_by_server(client)
    assert served.counts(proxy=1, proxy_fail=0, close_c=1)


def test_a_plain_listener_takes_a_proxy_header_for_a_broken_stream(serve: type[Served]) -> None:
    served = serve()
    client = served.connect()
    client.sendall(b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n")  # "PR": a 20562-byte request
    assert closed_by_server(client)
    assert served.counts(recvfail=1, close_s_err=1, proxy=0)


# -- tcp_pad, tcp_timeout ----------------------------------------------------


def test_tcp_pad_pads_answers_with_an_opt_and_dso_messages(serve: type[Served]) -> None:
    served = serve(TcpLimits(idle_timeout=30.0, max_clients=16, tcp_pad=True))
    client = served.connect()
    client.sendall(frame(dns_query()) + frame(dns_query(edns=b"")) + frame(keepalive()))
    padded, plain, dso_answer = read_frame(client), read_frame(client), read_frame(client)
    assert len(padded) == 468 and set(options_of(padded)) == {KEEPALIVE_OPTION, PADDING_OPTION}
    assert len(plain) < 468  # no OPT, no padding
    assert len(dso_answer) == 468


def test_the_shapes_a_listener_uses_follow_its_options() -> None:
    assert TcpShape.of(15, False).keepalive == 150
    assert TcpShape.of(15, True, closing=True) == TcpShape(0, True)
    assert TcpShape.of(15, False, closing=True, dso=True).in_dso_session
