"""Differential: ACME DNS-01 challenges merged with zone data, against gdnsd 3.8.1.

Both servers load the same zones and get the same challenges from Debian's
``gdnsdctl acme-dns-01``; then every challenged name (with and without its
``_acme-challenge`` label) is asked for several types, over UDP with and
without EDNS and over TCP, and the answers must match. ``acme`` has CNAME
chasing off (gdnsd's default), ``acme-chain`` on. Then a flush, and the same
again: nothing of the challenges may be left, in any cache.

REQ_CHAL byte streams on the control socket (bounds, counts, junk) must get
the same answers, and the connection must close or live on alike.

Two deliberate differences are kept out of the comparisons and checked on
their own: gdnsd fills a UDP answer with as many of a name's challenges as
fit and leaves the rest out without setting TC; pygdnsd truncates (TC), as
RFC 2181 5.1 asks, so that the client retries over TCP and sees them all.
And gdnsd serves any 43 bytes a client sends as a payload; pygdnsd refuses
what is not base64url ending in a NUL, as gdnsdctl sends.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REAL_GDNSDCTL, ServerProcess
from differential.compare import differences, report
from differential.normalise import normalise
from differential.queries import ANY, MX, A, Probe, opt_rr, query
from differential.wire import ask
from pygdnsd.control import protocol
from pygdnsd.control.deadline_read import ReadStopped, read_exactly
from pygdnsd.control.protocol import RequestKey

DATA = Path(__file__).resolve().parent.parent / "data" / "diff"
TXT, CNAME = 16, 5
CHALLENGED = [
    "snxd.example.com", "sub.example.com", "x.sub.example.com", "wild.example.com", "foo.wild.example.com",
    "foo.wildtxt.example.com", "cn.example.com", "target.example.com", "cn2.example.com", "t2.example.com",
    "cnout.example.com", "cn3.example.com", "t3.example.com", "mx.example.com", "ent.x.example.com",
    "example.com", "notzone.test", "example.org", "txtonly.example.com", "other.example.com",
]
UNCHALLENGED = ["nothing.example.com", "ns1.example.com", "deep.ent.x.example.com"]
MANY = "many.example.com"  # 20 payloads: more than a 512-byte answer holds
QTYPES = (TXT, A, ANY, MX, CNAME)


def payload(number: int) -> str:
    return f"{number:02d}" + "3456789012345678901234567890123456789012"[: 43 - 2] + "-_"[number % 2]


def add_challenges(server: ServerProcess) -> None:
    args = ["acme-dns-01"]
    for number, name in enumerate(CHALLENGED):
        args += [name, payload(number)]
    args += ["cn3.example.com", payload(98), "_acme-challenge.snxd.example.com", payload(99)]
    gdnsdctl(server, *args)
    gdnsdctl(server, "acme-dns-01", *(arg for number in range(20) for arg in (MANY, payload(number))))


def gdnsdctl(server: ServerProcess, *args: str) -> None:
    assert server.config_dir is not None
    result = subprocess.run(
        [str(REAL_GDNSDCTL), "-c", str(server.config_dir), "-t", "30", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, f"{server.kind}: {result.stderr}"


def acme_probes(names: list[str], udp_without_edns: bool = True) -> list[Probe]:
    probes = []
    for base in names:
        for name in (f"_acme-challenge.{base}", base):
            for qtype in QTYPES:
                if udp_without_edns:
                    probes.append(Probe(f"{name} type{qtype}", query(name, qtype)))
                probes += [
                    Probe(f"{name} type{qtype} edns", query(name, qtype, edns=opt_rr(udp=4096))),
                    Probe(f"{name} type{qtype} tcp", query(name, qtype), tcp=True),
                ]
    return probes


@pytest.fixture(scope="module", params=["acme", "acme-chain"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    assert REAL_GDNSD.exists() and REAL_GDNSDCTL.exists(), "Debian's gdnsd is the reference: run dev/bootstrap"
    source = DATA / request.param
    work = tmp_path_factory.mktemp(request.param)
    with ServerProcess("gdnsd", source, work / "ref") as reference, ServerProcess("pygdnsd", source, work / "ours") as ours:
        yield reference, ours


def test_challenges_are_served_like_gdnsd_serves_them_and_flushed_alike(pair: tuple[ServerProcess, ServerProcess]) -> None:
    reference, ours = pair
    everything = acme_probes([*CHALLENGED, *UNCHALLENGED])
    # Before: no challenge anywhere (and every answer now in our caches).
    found = differences(reference.address, ours.address, everything)
    assert not found, report(found, len(everything))
    for server in pair:
        add_challenges(server)
    probes = everything + acme_probes([MANY], udp_without_edns=False)
    found = differences(reference.address, ours.address, probes)
    assert not found, report(found, len(probes))
    for server in pair:
        gdnsdctl(server, "acme-dns-01-flush")
    found = differences(reference.address, ours.address, probes)
    assert not found, report(found, len(probes))


def challenge_streams() -> dict[str, bytes]:
    """REQ_CHAL byte streams, each followed by a REQ_INFO (is the connection still served?)."""
    name = b"\x07example\x03com\x00"
    good = bytes([len(name)]) + name + payload(0).encode() + b"\x00"

    def chal(count: int, data: bytes, size: int | None = None) -> bytes:
        return protocol.header_with_count(RequestKey.CHAL, count, len(data) if size is None else size).encode() + data

    streams = {
        "good": chal(1, good),
        "uppercase name": chal(1, good.replace(b"example", b"EXAMPLE")),
        "binary label": chal(1, b"\x0d\x07exampl\xff\x03com\x00" + good[14:]),
        "100 at most": chal(100, good * 100),
        "count 0": chal(0, good),
        "count 101": chal(101, good * 101),
        "no data": chal(1, b""),
        "over 28400 bytes": chal(1, bytes(28401)),
        "trailing junk": chal(1, good + b"\x00"),
        "fewer than counted": chal(2, good),
        "too short for a payload": chal(1, bytes(10)),
    }
    info = protocol.info_request(protocol.COMPAT_VERSION).encode()
    return {label: stream + info for label, stream in streams.items()}


def answered(server: ServerProcess, stream: bytes) -> tuple[bytes, ...]:
    """The response keys the server sent for ``stream`` before closing or going quiet."""
    keys = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(str(server.work_dir / "run" / "control.sock"))
        sock.sendall(stream)
        for _ in range(2):
            try:
                header = read_exactly(sock, protocol.HEADER_SIZE, time.monotonic() + 2.0)
            except (ReadStopped, OSError):
                keys.append(b"closed")
                break
            keys.append(header[:1])
    return tuple(keys)


def test_challenge_requests_get_gdnsds_answers(pair: tuple[ServerProcess, ServerProcess]) -> None:
    reference, ours = pair
    try:
        for label, stream in challenge_streams().items():
            assert answered(ours, stream) == answered(reference, stream), label
    finally:
        for server in pair:
            gdnsdctl(server, "acme-dns-01-flush")


def test_challenge_data_gdnsd_takes_but_should_not_is_refused(pair: tuple[ServerProcess, ServerProcess]) -> None:
    # gdnsd serves whatever 43 bytes follow a name; we take what gdnsdctl sends only.
    reference, ours = pair
    name = b"\x07example\x03com\x00"
    info = protocol.info_request(protocol.COMPAT_VERSION).encode()
    try:
        for data in (b"0 23" + payload(0).encode()[4:] + b"\x00", payload(0).encode() + b"!"):
            stream = protocol.header_with_count(RequestKey.CHAL, 1, 1 + len(name) + 44).encode()
            stream += bytes([len(name)]) + name + data + info
            assert answered(reference, stream) == (b"A", b"A")
            assert answered(ours, stream) == (b"F", b"A")
    finally:
        for server in pair:
            gdnsdctl(server, "acme-dns-01-flush")


def test_too_many_challenges_for_udp_truncate_rather_than_go_missing(pair: tuple[ServerProcess, ServerProcess]) -> None:
    reference, ours = pair
    for server in pair:
        gdnsdctl(server, "acme-dns-01", *(arg for number in range(20) for arg in (MANY, payload(number))))
    try:
        packet = query(f"_acme-challenge.{MANY}", TXT)
        theirs = normalise(ask(reference.address, packet, False))
        mine = normalise(ask(ours.address, packet, False))
        assert dict(theirs.header)["tc"] == 0 and 0 < dict(theirs.header)["ancount"] < 20  # some missing, silently
        assert dict(mine.header)["tc"] == 1 and dict(mine.header)["ancount"] == 0
        assert dict(normalise(ask(ours.address, packet, True)).header)["ancount"] == 20
    finally:
        for server in pair:
            gdnsdctl(server, "acme-dns-01-flush")
