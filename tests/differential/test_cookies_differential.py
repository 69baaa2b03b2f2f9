"""Differential: cookies and malformed EDNS options, answers and counters, against gdnsd 3.8.1.

The two servers' server cookies differ by design (README, deliberate
differences), so a probe that sends a valid server cookie is built for each
server from the cookie that server gave. After each probe the change in
``gdnsdctl stats`` must match too: gdnsd's suite checks these counters
(023cookies, 004misc/019bad, 013clientsub, 003complex/005big). Both daemons
are asked with Debian's gdnsdctl.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REAL_GDNSDCTL, ServerProcess
from differential.compare import REPLY_TIMEOUT, report
from differential.compare import counters as all_counters
from differential.normalise import Normalised, describe_difference, normalise
from differential.queries import COOKIE, ECS, NSID, header, opt_rr, option, question
from differential.wire import ask

DATA = Path(__file__).resolve().parent.parent / "data" / "diff"
# CNAME chasing and NSID on, a cookie key: the options all have something to answer.
CONFIG = DATA / "chain"

CLIENT = b"\x01\x23\x45\x67\x89\xab\xcd\xef"
DO = 0x8000
Q = question("www.example.com")
GOOD_ECS = option(ECS, struct.pack("!HBB", 1, 24, 0) + bytes([192, 0, 2]))
BAD_ECS = option(ECS, struct.pack("!HBB", 1, 33, 0) + bytes(5))  # prefix past 32 bits


def questionless(opt: bytes, flags: int = 0) -> bytes:
    """A query with QDCOUNT 0 and only an OPT record."""
    return header(flags=flags, qd=0, ar=1) + opt


def with_opt(opt: bytes, flags: int = 0, qd: int = 1) -> bytes:
    return header(flags=flags, qd=qd, ar=1) + Q * qd + opt


# Label -> (packet built from the server's valid cookie, over TCP).
PROBES: dict[str, tuple[Callable[[bytes], bytes], bool]] = {
    # RFC 7873 5.4: QDCOUNT 0 with a cookie is NOERROR whatever the cookie's state.
    "qd0 valid cookie": (lambda good: questionless(opt_rr(options=option(COOKIE, good))), False),
    "qd0 valid cookie tcp": (lambda good: questionless(opt_rr(options=option(COOKIE, good))), True),
    "qd0 client cookie": (lambda _: questionless(opt_rr(options=option(COOKIE, CLIENT))), False),
    "qd0 bad server cookie": (lambda _: questionless(opt_rr(options=option(COOKIE, CLIENT + bytes(8)))), False),
    "qd0 cookie nsid ecs DO": (
        lambda good: questionless(opt_rr(flags=DO, options=option(NSID) + option(COOKIE, good) + GOOD_ECS)),
        False,
    ),
    "qd0 no cookie": (lambda _: questionless(opt_rr()), False),
    "qd0 no opt": (lambda _: header(qd=0), False),
    "qd0 short cookie": (lambda _: questionless(opt_rr(options=option(COOKIE, b"0123"))), False),
    "qd0 cookie opcode 2": (lambda good: questionless(opt_rr(options=option(COOKIE, good)), flags=2 << 11), False),
    "qd0 cookie version 1": (lambda good: questionless(opt_rr(version=1, options=option(COOKIE, good))), False),
    "qd0 cookie trailing bytes": (lambda _: questionless(opt_rr(options=option(COOKIE, CLIENT))) + b"junk", False),
    # Only the first cookie option counts (019bad.t, test 27).
    "two client cookies": (lambda _: with_opt(opt_rr(options=option(COOKIE, CLIENT) + option(COOKIE, b"fedcba98"))), False),
    "valid then bad-length cookie": (lambda good: with_opt(opt_rr(options=option(COOKIE, good) + option(COOKIE, b"x"))), False),
    "client then valid cookie": (lambda good: with_opt(opt_rr(options=option(COOKIE, b"fedcba98") + option(COOKIE, good))), False),
    "bad-length then client cookie": (lambda _: with_opt(opt_rr(options=option(COOKIE, b"x") + option(COOKIE, CLIENT))), False),
    # Options read in order: a FORMERR answers those before the bad one.
    "cookie nsid then bad ecs": (lambda _: with_opt(opt_rr(options=option(COOKIE, CLIENT) + option(NSID) + BAD_ECS)), False),
    "bad ecs then cookie": (lambda _: with_opt(opt_rr(options=BAD_ECS + option(COOKIE, CLIENT))), False),
    "ecs then bad cookie": (lambda _: with_opt(opt_rr(options=GOOD_ECS + option(COOKIE, b"abc"))), False),
    "cookie then overrun": (lambda _: with_opt(opt_rr(options=option(COOKIE, CLIENT) + b"\x00\x05\x00\x09ab")), False),
    "two ecs": (lambda _: with_opt(opt_rr(options=GOOD_ECS + option(ECS, struct.pack("!HBB", 1, 16, 0) + b"\x0a\x01"))), False),
    "ecs then bad ecs": (lambda _: with_opt(opt_rr(options=GOOD_ECS + BAD_ECS)), False),
    "bad ecs tcp": (lambda _: with_opt(opt_rr(options=BAD_ECS)), True),
    # The order of checks: records, version, opcode, question count.
    "version 1 bad options": (lambda _: with_opt(opt_rr(version=1, options=option(COOKIE, b"abc") + BAD_ECS)), False),
    "opcode 2 bad cookie": (lambda _: with_opt(opt_rr(options=option(COOKIE, b"abc")), flags=2 << 11), False),
    "opcode 2 two questions": (lambda _: with_opt(opt_rr(options=option(COOKIE, CLIENT)), flags=2 << 11, qd=2), False),
    "two questions version 1": (lambda _: with_opt(opt_rr(version=1), qd=2), False),
    "two questions bad cookie DO": (lambda _: with_opt(opt_rr(flags=DO, options=option(COOKIE, b"abc")), qd=2), False),
    "opcode 2 answer garbage": (lambda _: header(flags=2 << 11, an=1) + Q, False),
    # Truncation counters: EDNS ones only in udp.edns_tc (005big.t), also when served again.
    "big edns 512": (lambda _: header(ar=1) + question("big.example.com") + opt_rr(udp=512), False),
    "big edns 512 again": (lambda _: header(ar=1) + question("big.example.com") + opt_rr(udp=512), False),
    "bigtxt edns 512 cookie": (
        lambda _: header(ar=1) + question("bigtxt.example.com", 16) + opt_rr(udp=512, options=option(COOKIE, CLIENT)),
        False,
    ),
    "big plain": (lambda _: header() + question("big.example.com"), False),
}


def counters(server: ServerProcess) -> dict[str, int]:
    """The server's DNS and UDP counters and TCP requests, flat (``stats.noerror``...)."""
    return {name: value for name, value in all_counters(server).items() if not name.startswith("tcp.") or name == "tcp.reqs"}


def valid_cookie(server: ServerProcess) -> bytes:
    """The full cookie (client + server) this server gives ``CLIENT``."""
    response = ask(server.address, with_opt(opt_rr(options=option(COOKIE, CLIENT))), False)
    assert response is not None
    at = response.index(struct.pack("!HH", COOKIE, 16) + CLIENT)
    return response[at + 4 : at + 20]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    assert REAL_GDNSD.exists() and REAL_GDNSDCTL.exists(), "Debian's gdnsd missing: run dev/bootstrap"
    with ServerProcess("gdnsd", CONFIG, tmp_path_factory.mktemp("ref")) as reference, \
            ServerProcess("pygdnsd", CONFIG, tmp_path_factory.mktemp("ours")) as ours:
        yield reference, ours


def outcome(server: ServerProcess, packet: bytes, tcp: bool) -> tuple[Normalised, dict[str, int]]:
    """The normalised answer to ``packet`` and the counters it moved."""
    before = counters(server)
    answer = normalise(ask(server.address, packet, tcp, REPLY_TIMEOUT))
    after = counters(server)
    return answer, {name: after[name] - before[name] for name in after if after[name] != before[name]}


def test_cookie_only_query_gets_noerror_from_gdnsd(servers: tuple[ServerProcess, ServerProcess]) -> None:
    """What the comparison rests on: gdnsd answers a questionless query with a cookie, NOERROR."""
    reference, _ = servers
    answer, moved = outcome(reference, PROBES["qd0 valid cookie"][0](valid_cookie(reference)), False)
    assert dict(answer.header)["rcode"] == 0
    assert moved == {"stats.noerror": 1, "stats.edns": 1, "stats.edns_cookie_ok": 1, "udp.reqs": 1}


def test_cookie_and_option_answers_and_counters_match_gdnsd(servers: tuple[ServerProcess, ServerProcess]) -> None:
    reference, ours = servers
    cookies = {id(reference): valid_cookie(reference), id(ours): valid_cookie(ours)}
    found = []
    for label, (build, tcp) in PROBES.items():
        (expected, expected_moved), (actual, actual_moved) = (
            outcome(server, build(cookies[id(server)]), tcp) for server in (reference, ours)
        )
        diff = describe_difference(label, expected, actual)
        if expected_moved != actual_moved:
            diff += f"\n--- {label}: counters moved: gdnsd {expected_moved}, ours {actual_moved}"
        if diff:
            found.append(diff)
    assert not found, report(found, len(PROBES))
