"""Differential: which addresses go with an NS RRset as glue, against gdnsd 3.8.1.

gdnsd adds the addresses of an NS target that lies below the delegation, below
any other delegation of the zone, or outside the zone (glue kept in the zone
file); an authoritative target in the zone gets none. Referrals, the apex NS
answer and a CNAME chain ending there all follow that. ``glue`` holds every
kind of target in one zone; ``glue-root`` is gdnsd's own root-zone case
(006root), whose servers live under another delegation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, ServerProcess
from differential.compare import differences, report
from differential.normalise import normalise
from differential.queries import AAAA, ANY, DS, MX, NS, A, Probe, opt_rr, query
from differential.wire import ask

DATA = Path(__file__).resolve().parent.parent / "data" / "diff"

NAMES = {
    "glue": [
        "example.com", "toapex.example.com", "tother.example.com", "www.example.com",
        "sub.example.com", "x.sub.example.com", "ns.sub.example.com",
        "other.example.com", "a.b.other.example.com", "zzz.example.com", "ns.deep.zzz.example.com",
        "big.example.com", "x.big.example.com", "ns1.example.com", "ns.other.test",
    ],
    "glue-root": [
        ".", "www", "com", "www.example.com", "ns1.root-servers.com", "net", "foo.net",
        "org", "foo.org", "ns9.org", "ns3",
    ],
}
QTYPES = (A, AAAA, NS, MX, DS, ANY)


def glue_probes(config: str) -> list[Probe]:
    """Every name with every qtype: plain UDP, EDNS at 512 and 4096 (truncation), and TCP."""
    probes = []
    for name in NAMES[config]:
        for qtype in QTYPES:
            probes += [
                Probe(f"{name} type{qtype}", query(name, qtype)),
                Probe(f"{name} type{qtype} edns 512", query(name, qtype, edns=opt_rr(udp=512))),
                Probe(f"{name} type{qtype} edns 4096", query(name, qtype, edns=opt_rr(udp=4096))),
                Probe(f"{name} type{qtype} tcp", query(name, qtype), tcp=True),
            ]
    return probes


@pytest.fixture(scope="module", params=sorted(NAMES))
def reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"
    config = request.param
    with ServerProcess("gdnsd", DATA / config, tmp_path_factory.mktemp(f"ref-{config}")) as server:
        yield server


def test_the_probes_see_glue_from_under_other_delegations(reference: ServerProcess) -> None:
    """The probes exercise what is compared: gdnsd answers them with glue of each kind."""
    wanted = {
        "glue": ("x.other.example.com", "ns.deep.zzz.example.com."),
        "glue-root": ("foo.net", "ns1.root-servers.com."),
    }[reference.source_dir.name]
    answer = normalise(ask(reference.address, query(wanted[0]), False))
    assert any(record.startswith(wanted[1]) for record in answer.additional), answer


def test_pygdnsd_serves_glue_like_gdnsd(reference: ServerProcess, tmp_path: Path) -> None:
    probes = glue_probes(reference.source_dir.name)
    with ServerProcess("pygdnsd", reference.source_dir, tmp_path / "ours") as ours:
        found = differences(reference.address, ours.address, probes)
    assert not found, report(found, len(probes))
