"""Differential tests of the geoip plugin: pygdnsd must answer like gdnsd 3.8.1.

Both daemons run the site of ``geoip_site`` (generated City database,
GeoLite2 Country, FakeCountry, nets, a map without a database). Queries
carry client-subnet options of both families at source prefixes 0, 8, 16,
24, 32 (IPv4) and 0, 8, 16, 24, 32, 48, 56, 64, 96, 104, 112, 128 (IPv6),
the IPv6 ones also in every IPv4-like form (v4-mapped, v4-compatible, SIIT,
64:ff9b::/96, Teredo, 6to4) masked to the prefix; the responses must be
identical apart from record order, the echoed option (family, source
prefix, scope, address) included. Queries without the option come from
several loopback source addresses, which the ``nodb`` map tells apart.
gdnsd_geoip_test and ours must print the same for every map and address.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REPO, ServerProcess
from differential import geoip_site
from differential.compare import REPLY_TIMEOUT, differences, report
from differential.normalise import describe_difference, normalise
from differential.queries import ECS, Probe, opt_rr, option, query

REAL_GEOIP_TEST = Path("/usr/bin/gdnsd_geoip_test")
OUR_GEOIP_TEST = REPO / ".venv" / "bin" / "gdnsd_geoip_test"
V4_PREFIXES = (0, 8, 16, 24, 32)
V6_PREFIXES = (0, 8, 16, 24, 32, 48, 56, 64, 96, 104, 112, 128)
PROBES = 1400
# Source addresses of queries without the option (nodb: 127.0.0.0/9 vs 127.0.0.64/26).
SOURCES = ("127.0.0.1", "127.0.0.70", "127.0.0.130", "127.128.0.1", "127.200.3.4")


def _v4_pool(rng: random.Random) -> int:
    """An IPv4 address where the site's data is dense (its City networks, GeoLite2 hot spots)."""
    pick = rng.randrange(6)
    if pick == 0:
        return int(ipaddress.IPv4Address("10.0.0.0")) | rng.getrandbits(24)
    if pick == 1:
        return int(ipaddress.IPv4Address(rng.choice(("192.0.2.0", "198.51.100.0", "203.0.113.0")))) | rng.getrandbits(8)
    if pick == 2:
        return int(ipaddress.IPv4Address(rng.choice(("1.0.0.0", "8.8.8.0", "127.0.0.0")))) | rng.getrandbits(8)
    return rng.getrandbits(32)


def _v6_native(rng: random.Random) -> int:
    pick = rng.randrange(4)
    if pick == 0:
        return (0x20010DB8 << 96) | rng.getrandbits(96)
    if pick == 1:
        return (rng.choice((0x2A00, 0x2400, 0x2800, 0x2001, 0x2604, 0x2C0F)) << 112) | rng.getrandbits(108)
    if pick == 2:
        return (0x20014860 << 96) | rng.getrandbits(96)
    return rng.getrandbits(128)


def _v4_like(v4: int, form: str, rng: random.Random) -> int:
    if form == "mapped":
        return (0xFFFF << 32) | v4
    if form == "compat":
        return v4
    if form == "siit":
        return (0xFFFF << 48) | v4
    if form == "wkp":
        return (0x0064FF9B << 96) | v4
    if form == "teredo":
        return (0x20010000 << 96) | (rng.getrandbits(64) << 32) | (~v4 & 0xFFFFFFFF)
    return (0x2002 << 112) | (v4 << 80) | rng.getrandbits(80)  # 6to4


FORMS = ("native", "mapped", "compat", "siit", "wkp", "teredo", "6to4")


def ecs_option(family: int, prefix: int, value: int) -> tuple[bytes, str]:
    width = 32 if family == 1 else 128
    masked = value & (((1 << prefix) - 1) << (width - prefix)) if prefix else 0
    packed = masked.to_bytes(width // 8, "big")[: (prefix + 7) // 8]
    text = ipaddress.ip_address(masked if family == 1 else ipaddress.IPv6Address(masked))
    return option(ECS, struct.pack("!HBB", family, prefix, 0) + packed), f"{text}/{prefix}"


def ecs_probes(count: int = PROBES, seed: int = 14) -> list[Probe]:
    rng = random.Random(seed)
    probes = []
    names = geoip_site.NAMES
    for i in range(count):
        name, qtype = rng.choice(geoip_site.PINNED) if i % 10 == 9 else names[i % len(names)]
        if rng.random() < 0.35:
            data, text = ecs_option(1, rng.choice(V4_PREFIXES), _v4_pool(rng))
        else:
            form = FORMS[i % len(FORMS)]
            value = _v6_native(rng) if form == "native" else _v4_like(_v4_pool(rng), form, rng)
            data, text = ecs_option(2, rng.choice(V6_PREFIXES), value)
        packet = query(f"{name}.example.com", qtype, qid=i & 0xFFFF, edns=opt_rr(options=data))
        probes.append(Probe(f"{name}/{qtype} ecs {text}", packet))
    return probes


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"
    return geoip_site.write_site(tmp_path_factory.mktemp("geoip-site") / "src")


@pytest.fixture(scope="module")
def servers(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    work = tmp_path_factory.mktemp("geoip-run")
    with ServerProcess("gdnsd", site, work / "gdnsd") as theirs, ServerProcess(
        "pygdnsd", site, work / "ours"
    ) as ours:
        yield theirs, ours


def test_probe_set_covers_every_prefix_and_form() -> None:
    probes = ecs_probes()
    labels = [p.label for p in probes]
    assert len(probes) >= 1000
    for prefix in V4_PREFIXES:
        assert any("." in lbl.split(" ecs ")[1] and lbl.endswith(f"/{prefix}") for lbl in labels)
    for prefix in V6_PREFIXES:
        assert any(":" in lbl.split(" ecs ")[1] and lbl.endswith(f"/{prefix}") for lbl in labels)
    assert any(lbl.split(" ecs ")[1].startswith("2002:") for lbl in labels)
    assert any(lbl.split(" ecs ")[1].startswith("::ffff:") for lbl in labels)


def test_answers_with_client_subnet_match_gdnsd(servers: tuple[ServerProcess, ServerProcess]) -> None:
    """Twice over: the second time pygdnsd answers from what it remembered of the first."""
    theirs, ours = servers
    probes = ecs_probes()
    found = differences(theirs.address, ours.address, probes + probes)
    assert not found, report(found, 2 * len(probes))


def test_the_scope_is_compared_not_only_present(servers: tuple[ServerProcess, ServerProcess]) -> None:
    """The harness must see a scope that differs: gdnsd's answer with its scope byte changed."""
    theirs, _ = servers
    data, _ = ecs_option(1, 24, int(ipaddress.IPv4Address("10.3.1.0")))
    packet = query("city.example.com", edns=opt_rr(options=data))
    answer = _ask(theirs.address, packet)
    assert answer is not None
    at = answer.rfind(struct.pack("!HH", ECS, 7))
    assert at > 0 and answer[at + 7] == 18  # gdnsd: Paris's nets split at 10.3.64.0/18
    changed = answer[: at + 7] + bytes([17]) + answer[at + 8 :]
    assert describe_difference("scope", normalise(answer), normalise(changed))


def _ask(address: tuple[str, int], packet: bytes, source: str = "127.0.0.1") -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(REPLY_TIMEOUT)
        sock.sendto(packet, address)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


@pytest.mark.parametrize("source", SOURCES)
def test_answers_without_client_subnet_follow_the_source(
    servers: tuple[ServerProcess, ServerProcess], source: str
) -> None:
    theirs, ours = servers
    found = []
    for name, qtype in geoip_site.NAMES + geoip_site.PINNED:
        for edns in (None, opt_rr(), opt_rr(options=ecs_option(1, 0, 0)[0]), opt_rr(options=ecs_option(2, 0, 0)[0])):
            packet = query(f"{name}.example.com", qtype, edns=edns)
            label = f"{name}/{qtype} from {source} edns={edns is not None}"
            diff = describe_difference(
                label, normalise(_ask(theirs.address, packet, source)), normalise(_ask(ours.address, packet, source))
            )
            if diff:
                found.append(diff)
    assert not found, report(found, len(found))


def test_the_nodb_map_tells_the_sources_apart(servers: tuple[ServerProcess, ServerProcess]) -> None:
    _, ours = servers
    packet = query("nodb.example.com")
    first = normalise(_ask(ours.address, packet, "127.0.0.1")).answer
    second = normalise(_ask(ours.address, packet, "127.0.0.70")).answer
    assert first and second and first != second


def test_geoip_test_tool_prints_what_gdnsd_prints(servers: tuple[ServerProcess, ServerProcess]) -> None:
    theirs, _ = servers
    assert theirs.config_dir is not None
    rng = random.Random(5)
    lines = []
    for name in ("city", "auto", "auto0", "country", "fake", "nodb", "noecs"):
        for i in range(60):
            form = FORMS[i % len(FORMS)]
            value = _v4_pool(rng)
            if form == "native" and i % 2:
                text = str(ipaddress.IPv4Address(value))
            else:
                full = _v6_native(rng) if form == "native" else _v4_like(value, form, rng)
                text = str(ipaddress.IPv6Address(full))
            lines.append(f"{name} {text}")
    stdin = "\n".join(lines) + "\n"
    args = ["-c", str(theirs.config_dir)]
    expected = subprocess.run([str(REAL_GEOIP_TEST), *args], input=stdin, capture_output=True, text=True, timeout=120)
    actual = subprocess.run([str(OUR_GEOIP_TEST), *args], input=stdin, capture_output=True, text=True, timeout=120)
    assert actual.returncode == expected.returncode == 0
    assert len(expected.stdout.splitlines()) == len(lines)
    mismatches = [
        f"gdnsd: {a}\n ours: {b}"
        for a, b in zip(expected.stdout.splitlines(), actual.stdout.splitlines(), strict=True)
        if a != b
    ]
    assert not mismatches, "\n".join(mismatches[:20])
