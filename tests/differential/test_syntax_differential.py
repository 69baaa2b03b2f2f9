"""Differential: zone-file syntax gdnsd 3.8.1 reads, served as gdnsd serves it.

``data/diff/syntax`` holds the constructs gdnsd's own suite zones use and
pygdnsd once refused (issue 13): a blank owner before any owner (the zone's
name, after an indented comment and ``$TTL``), in an ``$INCLUDE``d file too
(the zone's name again, not the include's origin); a quoted string that goes
on over several lines (the newlines are in the string), next to another
without a blank; a multi-line SOA with comments; parentheses in comments
and in quoted strings; class before TTL; a lowercase type; a blank owner
after an ``$INCLUDE`` (the including file's last owner) and after
``$ORIGIN`` (the last owner still). Every name that should exist is asked
every type it may hold, and some that should not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, ServerProcess
from differential.compare import differences, report
from differential.normalise import normalise
from differential.queries import AAAA, ANY, MX, NS, SOA, SRV, TXT, A, Probe, opt_rr, query
from differential.wire import ask

SOURCE = Path(__file__).resolve().parent.parent / "data" / "diff" / "syntax"
NAMES = [
    "example.com", "www.example.com", "ns1.example.com", "ns2.example.com", "_http._tcp.example.com",
    "multi.example.com", "esc.example.com", "paren.example.com", "sub.example.com", "in2.sub.example.com",
    "last.example.com", "deep.example.com", "inner.deep.example.com", "nothere.example.com",
    "last.deep.example.com",
]
QTYPES = (A, AAAA, NS, SOA, MX, TXT, SRV, ANY)


def syntax_probes() -> list[Probe]:
    probes = []
    for name in NAMES:
        for qtype in QTYPES:
            probes += [
                Probe(f"{name} type{qtype}", query(name, qtype)),
                Probe(f"{name} type{qtype} edns", query(name, qtype, edns=opt_rr(udp=4096))),
            ]
    return probes


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"
    with ServerProcess("gdnsd", SOURCE, tmp_path_factory.mktemp("ref-syntax")) as server:
        yield server


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        # The blank owner before any owner: the zone's SOA.
        ("example.com", SOA, "example.com. 900 class=1 type=6 ns1.example.com. dns-admin.example.com. 1 7200 1800 259200 900"),
        # A blank owner first in an included file (origin sub): the zone's name.
        ("example.com", TXT, "example.com. 86400 class=1 type=16 \"first in an included file: the zone, not this file's origin\""),
        # Newlines inside a quoted string; "asdf""xyz: two strings.
        ("multi.example.com", TXT,
         'multi.example.com. 86400 class=1 type=16 "foo bar" "asdf" "xyz\\012two more\\012lines" "plain"'),
        # After $ORIGIN, a blank owner is the last one written.
        ("last.example.com", AAAA, "last.example.com. 86400 class=1 type=28 2001:db8::8"),
        # After an $INCLUDE, the including file's last owner.
        ("paren.example.com", TXT, 'paren.example.com. 86400 class=1 type=16 "after the include: paren again"'),
    ],
)
def test_the_zone_exercises_each_construct_in_gdnsd(
    reference: ServerProcess, name: str, qtype: int, expected: str
) -> None:
    """What is compared is there: gdnsd answers these as the zone file means them."""
    answer = normalise(ask(reference.address, query(name, qtype), False))
    assert expected in answer.answer, answer


def test_pygdnsd_loads_and_serves_the_syntax_like_gdnsd(reference: ServerProcess, tmp_path: Path) -> None:
    probes = syntax_probes()
    with ServerProcess("pygdnsd", SOURCE, tmp_path / "ours") as ours:
        found = differences(reference.address, ours.address, probes)
    assert not found, report(found, len(probes))
