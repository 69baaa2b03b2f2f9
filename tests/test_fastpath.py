"""The compiled UDP fast path (``transport/_fastpath.c``) gives the pure-Python path's bytes.

Two Responders over the same zones and settings get the same queries in the
same order: one answers everything in Python (``respond``), the other as
the UDP server does with the compiled path (``FastAnswers.answer`` first,
``respond`` for what it leaves). Every response and every counter must be
the same. Each query is sent three times: the first builds the answer in
Python, the second finds it in the engine's cache (``by_question``) and
copies it, the third finds the copy.
"""

from __future__ import annotations

import itertools
import random
import socket
from collections.abc import Iterable
from pathlib import Path

import pytest

from engine_support import (
    AAAA,
    ANY,
    CNAME,
    DEFAULT_ZONES,
    MX,
    NS,
    SOA,
    SRV,
    TXT,
    V4,
    V6,
    A,
    opt_rr,
    query,
    responder,
    write_zones,
)
from fuzz.checks import build_responder
from fuzz.mutator import PacketFuzzer
from pygdnsd.engine.responder import Responder
from pygdnsd.transport import fastpath
from pygdnsd.zones.model import ZoneSet

compiled = fastpath.choose({}).module

NAMES = [
    "example.com", "www.example.com", "WwW.ExAmPlE.cOm", "ns1.example.com", "mail.example.com",
    "ftp.example.com", "ext.example.com", "chain1.example.com", "dangling.example.com",
    "_sip._tcp.example.com", "txt.example.com", "mid.example.com", "x.wild.example.com",
    "Y.WILD.example.com", "a.wc.example.com", "deleg.example.com", "host.deleg.example.com",
    "deleg3.example.com", "tocut.example.com", "big.example.com", "BIG.example.com",
    "nothing.example.com", "b.ent.example.com", "example.net", "www.example.net", "example.org",
]
TYPES = [A, AAAA, MX, TXT, NS, SOA, ANY, CNAME, SRV, 99]
EDNS = [None, opt_rr(4096), opt_rr(4096, do=True), opt_rr(512), opt_rr(600, do=True), opt_rr(1232), opt_rr(100)]


def test_the_module_is_built_here() -> None:
    # dev/bootstrap builds it (gcc and python3-dev are among its packages).
    assert compiled is not None, "the compiled fast path is not built: run dev/bootstrap"


def pair(zones: ZoneSet, **settings: object) -> tuple[Responder, Responder]:
    return responder(zones, **settings), responder(zones, **settings)


def answer_both(pure: Responder, fast_one: Responder, packets: Iterable[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Every packet to both; asserts the same bytes. Returns (answered in C, total)."""
    assert compiled is not None
    fast = fast_one.udp_fast_path(compiled)
    in_c = total = 0
    for packet, client in packets:
        expected = pure.respond(packet, client, False)
        got = fast.answer(packet, len(client) == 16)
        if got is not None:
            in_c += 1
        else:
            got = fast_one.respond(packet, client, False)
        assert got == expected, f"query {packet.hex()} from {client.hex()}"
        total += 1
    assert fast_one.stats.snapshot() == pure.stats.snapshot()
    assert fast_one._rotation == pure._rotation
    return in_c, total


def shaped_queries() -> list[tuple[bytes, bytes]]:
    out = []
    for name, qtype, edns, client, rd in itertools.product(NAMES, TYPES, EDNS, (V4, V6), (True, False)):
        packet = query(name, qtype, rd=rd, edns=edns, ident=random.Random(name).randrange(65536))
        out += [(packet, client)] * 3
    return out


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> ZoneSet:
    return write_zones(tmp_path_factory.mktemp("fastpath-zones"), DEFAULT_ZONES)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"max_edns_response": 1024, "max_edns_response_v6": 700},
        {"max_nocookie_response": 400},
        {"max_nocookie_response": 1100},
    ],
    ids=["defaults", "small-edns-limits", "nocookie-400", "nocookie-1100"],
)
def test_same_bytes_and_counts_as_python(zones: ZoneSet, settings: dict[str, object]) -> None:
    pure, fast_one = pair(zones, **settings)
    in_c, total = answer_both(pure, fast_one, shaped_queries())
    # The common shapes (no EDNS or a bare OPT, class IN) of every cached question: most of the repeats.
    assert in_c > total // 2
    counters = pure.stats.udp.values
    assert counters["tc"] and counters["edns_tc"]
    assert counters["edns_big"] or settings.get("max_nocookie_response") == 400


def test_rotations_follow_one_counter_across_both_paths(zones: ZoneSet) -> None:
    pure, fast_one = pair(zones)
    big = query("big.example.com", A, edns=opt_rr(4096))
    other = query("www.example.com", A)  # three A records: rotated too
    packets = [(big, V4), (other, V6)] * 20
    in_c, _ = answer_both(pure, fast_one, packets)
    assert in_c == 38  # all but each question's first time
    answers = {fast_one.respond(big, V4, False) for _ in range(4)}
    assert len(answers) == 4  # every record first in turn


def test_the_rest_goes_to_python(zones: ZoneSet) -> None:
    assert compiled is not None
    engine = responder(zones)
    fast = engine.udp_fast_path(compiled)
    cached = query("www.example.com", A)
    engine.respond(cached, V4, False)
    assert fast.answer(cached, False) is not None
    chaos = query("version.bind", TXT, qclass=3)
    engine.respond(chaos, V4, False)
    declined = [
        cached[:2] + b"\x81" + cached[3:],  # QR set
        cached[:2] + b"\x28" + cached[3:],  # opcode 5
        cached[:5] + b"\x02" + cached[6:],  # two questions
        cached[:-1],  # truncated
        cached + b"\x00",  # trailing byte
        query("www.example.com", A, edns=opt_rr(4096, version=1)),
        query("www.example.com", A, edns=opt_rr(4096, options=b"\x00\x03\x00\x00")),
        chaos,
        query("nowhere.example.com", A),  # not asked before: Python builds it
        query("www.example.com", 252),  # AXFR: NOTIMP, never cached
        b"",
        b"\x00" * 11,
        b"\x00" * 17,
        cached[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # compressed question name
        cached[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label over 63
        cached[:12] + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # name over 255
    ]
    for packet in declined:
        assert fast.answer(packet, False) is None, packet.hex()


def test_a_reload_is_seen_at_once(zones: ZoneSet, tmp_path: Path) -> None:
    assert compiled is not None
    engine = responder(zones)
    fast = engine.udp_fast_path(compiled)
    packet = query("www.example.net", A)
    for _ in range(3):
        first = fast.answer(packet, False) or engine.respond(packet, V4, False)
    assert first is not None and b"\xc0\x00\x02\xc9" in first  # 192.0.2.201
    assert len(engine._cache.compiled) == 1  # type: ignore[arg-type]
    changed = DEFAULT_ZONES | {"example.net": DEFAULT_ZONES["example.net"].replace("192.0.2.201", "192.0.2.99")}
    engine.set_zones(write_zones(tmp_path, changed))
    assert engine._cache.compiled is None
    assert fast.answer(packet, False) is None  # new zones: nothing prepared yet
    again = engine.respond(packet, V4, False)
    assert again is not None and b"\xc0\x00\x02\x63" in again
    assert fast.answer(packet, False) == again


def test_a_full_table_is_emptied_and_filled_again(zones: ZoneSet) -> None:
    # More distinct questions than the table holds (half of its 2**18 slots).
    assert compiled is not None
    engine = responder(zones)
    fast = engine.udp_fast_path(compiled)
    held = 0
    previous = 0
    emptied = False
    for n in range(200_000):
        packet = query(f"h{n}.wild.example.com", A, ident=n & 0xFFFF)
        expected = engine.respond(packet, V4, False)
        assert fast.answer(packet, False) == expected  # from the engine's cache, then copied
        held = len(engine._cache.compiled)  # type: ignore[arg-type]
        emptied = emptied or held < previous
        previous = held
    assert emptied and 0 < held < 200_000
    # The copies made since still answer.
    recent = query("h199999.wild.example.com", A, ident=199_999 & 0xFFFF)
    assert fast.answer(recent, False) == engine.respond(recent, V4, False)


def test_fuzzed_queries_same_bytes(tmp_path: Path) -> None:
    pure, questions = build_responder(tmp_path / "a")
    fast_one, _ = build_responder(tmp_path / "b")
    fuzzer = PacketFuzzer(1234, questions)
    packets = []
    for index, (_kind, packet) in enumerate(fuzzer.cases(30_000)):
        client = (V4, V6)[index % 2]
        packets += [(packet, client), (packet, client)]
    in_c, _ = answer_both(pure, fast_one, packets)
    assert in_c > 1000


def test_batches_answer_as_python_over_the_wire(zones: ZoneSet) -> None:
    # FastAnswers inside a Batch (the server's use), on a socket pair.
    assert compiled is not None
    pure, fast_one = pair(zones)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    batch = compiled.Batch(server.fileno(), socket.AF_INET, 32, 4096, 65536, 0, fast_one.udp_fast_path(compiled))
    failures: list[BaseException] = []
    sent = [packet for packet, peer in shaped_queries() if peer == V4][:600]
    for start in range(0, len(sent), 20):
        chunk = sent[start : start + 20]
        for packet in chunk:
            client.sendto(packet, server.getsockname())
        count = 0
        while count < len(chunk):
            read = batch.receive()
            assert batch.answer(read, fast_one.respond, lambda _ip, error: failures.append(error)) == 0
            count += read
        for packet in chunk:
            expected = pure.respond(packet, V4, False)
            if expected is not None:
                assert client.recv(65536) == expected
    assert not failures
    assert fast_one.stats.snapshot()["stats"] == pure.stats.snapshot()["stats"]
    server.close()
    client.close()


def test_a_read_takes_a_whole_batch_and_says_when_the_socket_is_empty() -> None:
    assert compiled is not None
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as server, socket.socket(
        socket.AF_INET6, socket.SOCK_DGRAM
    ) as client:
        server.bind(("::1", 0))
        for n in range(40):
            client.sendto(b"q%d" % n, server.getsockname())
        batch = compiled.Batch(server.fileno(), socket.AF_INET6, 32, 512, 4096)
        seen: list[tuple[bytes, bytes]] = []

        def respond(query: bytes, client_ip: bytes, tcp: bool) -> bytes | None:
            seen.append((query, client_ip))
            return None

        assert batch.receive() == 32
        assert batch.answer(32, respond, lambda _ip, error: None) == 0
        assert batch.receive() == 8
        with pytest.raises(ValueError):
            batch.answer(9, respond, lambda _ip, error: None)  # only 8 slots hold datagrams
        assert batch.answer(8, respond, lambda _ip, error: None) == 0
        assert seen == [(b"q%d" % n, socket.inet_pton(socket.AF_INET6, "::1")) for n in range(40)]
        assert batch.receive() == 0


def test_objects_not_initialised_refuse_work() -> None:
    assert compiled is not None
    with pytest.raises(ValueError, match="not initialised"):
        compiled.FastAnswers.__new__(compiled.FastAnswers).answer(b"\x00" * 20, False)
    batch = compiled.Batch.__new__(compiled.Batch)
    with pytest.raises(ValueError, match="not initialised"):
        batch.receive()
    with pytest.raises(ValueError, match="not initialised"):
        batch.answer(0, lambda *_: None, lambda *_: None)
    with pytest.raises(TypeError, match="initialised FastAnswers"):
        compiled.Batch(0, socket.AF_INET, 1, 512, 512, 0, compiled.FastAnswers.__new__(compiled.FastAnswers))
