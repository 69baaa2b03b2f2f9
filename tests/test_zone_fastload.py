"""The zone loader builds exactly what the reference path built, whatever the file's syntax.

``fastload.load_zone`` must either return a ``Zone`` equal to what
``tree.build_zone(parse_zone_file(...))`` built (recorded before that path
was removed, replayed by ``reference_results``), having written the same
warnings at the same lines, or raise the same error. There is no slower
whole-file path to step aside to.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import reference_results
from pygdnsd.errors import ZoneError
from pygdnsd.zones import fastload, model, names, parallel, parsing, pieces
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.settings import ZoneSettings

APEX = names.from_text("example.org.")
DATA = Path(__file__).resolve().parent / "data" / "zones"

# Every line shape the fast path reads itself.
RICH = """\
$TTL 1h
@ 1D IN SOA ns1 Hostmaster.Example.ORG. 2024010101 2h 30M 3w 900
@ NS ns1
  NS NS2.example.org.
@ 7200 MX 10 mail
@ TXT "v=spf1 -all" plain "" "with space"
@ CAA 0 issue "letsencrypt.org"
ns1 A 192.0.2.1
ns2 IN 600 A 192.0.2.2
ns2 600 IN AAAA 2001:DB8::2
Mail A 192.0.2.3
mail A 192.0.2.3 ; a duplicate, kept
mail   AAAA 2001:db8::3
multi A 192.0.2.20
multi A 192.0.2.21
\tA 192.0.2.22
x.y.z 60 A 192.0.2.4
_sip._udp 1800 SRV 5 500 5060 sip.example.net.
_sip._tcp SRV 5 500 5060 mail
naptr NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:info@example.org!" .
rev PTR host.example.net.
alias CNAME Mail
chain1 CNAME chain2
chain2 CNAME alias
wild.* A 192.0.2.6
* MX 20 mail
*.w CNAME mail
viawild CNAME x.w
tocut CNAME ns.sub
sub NS ns.sub
sub NS ns.example.net.
ns.sub A 192.0.2.9
ns.sub AAAA 2001:db8::9
t99 TYPE99 \\# 6 05763d737066
Odd+Chars/1=x!y 60 A 192.0.2.33
q TXT "semi;colon" "(paren)" unquoted"quoted"
$TTL 300
late A 192.0.2.30
absolute.example.org. A 192.0.2.31
zed.@Z A 192.0.2.32
$ORIGIN o.example.org.
@ A 192.0.2.12
a A 192.0.2.13
b.c TXT hello
$ORIGIN p.@Z
@ MX 5 mail.example.org.
"""


def reference(path: Path, settings: ZoneSettings) -> model.Zone:
    """What the reference path (removed) made of the zone: recorded, replayed (``reference_results``)."""
    return reference_results.reference(path, APEX, settings)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "example.org"
    path.write_text(text)
    return path


def test_rich_zone_takes_the_fast_path_and_equals_the_reference(tmp_path: Path) -> None:
    path = write(tmp_path, RICH)
    fast = fastload.load_zone(str(path), APEX, ZoneSettings())
    assert fast == reference(path, ZoneSettings())
    # Sanity: the comparison compares something.
    assert fast.nodes[names.from_text("multi.example.org.")][model.A].rdatas == (
        bytes((192, 0, 2, 20)), bytes((192, 0, 2, 21)), bytes((192, 0, 2, 22)),
    )
    assert fast.nodes[names.from_text("y.z.example.org.")] == {}
    assert fast.soa.ttl == 900
    assert fast.cuts == frozenset({names.from_text("sub.example.org.")})


def test_soa_warnings_still_logged_with_the_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, RICH)
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        fastload.load_zone(str(path), APEX, ZoneSettings())
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:2: zone 'example.org.': SOA TTL 86400 > ncache field 900, clamped to ncache value"
    ]


def test_strict_soa_warning_is_the_same_error(tmp_path: Path) -> None:
    path = write(tmp_path, RICH)
    settings = ZoneSettings(strict_data=True)
    with pytest.raises(ZoneError) as fast:
        fastload.load_zone(str(path), APEX, settings)
    with pytest.raises(ZoneError) as ref:
        reference(path, settings)
    assert str(fast.value) == str(ref.value)


# Each line, appended to RICH, makes the reference path warn: the fast
# path writes the same warnings itself.
WARNED = [
    "dangling CNAME nowhere.p",  # CNAME to NXDOMAIN (no *.p)
    "ptr2 PTR mail.example.org.",  # same-zone PTR
    "mx2 MX 1 nothing",  # MX target without addresses
    "mx3 MX 1 b.c.o",  # MX target that exists, without addresses
    "srv2 SRV 1 2 3 nothing\nmx4 MX 1 nothing\n  MX 2 nothing",  # each record its warning
    "t2 2 A 192.0.2.50",  # TTL clamp (never an error)
    "multi 60 A 192.0.2.51",  # TTLs disagree
    "_acme-challenge TXT token",
    "_acme-challenge.x 2 TXT token\n 120 TXT again",  # clamped, then overridden
    "ttls A 192.0.2.1\nttls 60 A 192.0.2.2\nttls 70 A 192.0.2.3",  # one warning per RRset
    "deep.ns.sub A 192.0.2.53",  # unused glue (dropped)
    "deep2.ns.sub 2 A 192.0.2.70\nout2.example.net. 2 A 192.0.2.71",  # dropped: their TTLs earn no warning
    "sub A 192.0.2.54\nsub AAAA 2001:db8::54",  # unused addresses at a cut (dropped)
    "out.example.net. A 192.0.2.54\n  AAAA 2001:db8::54",  # out-of-zone glue, unused (dropped)
    "ns.example.net. AAAA 2001:db8::55\nns.example.net. A 192.0.2.55",  # out-of-zone glue an NS names (kept)
]
# Syntax the fast path reads too, however the record is laid out.
LAID_OUT = [
    "paren A ( 192.0.2.55 )",
    "paren2 MX ( 10 ; a comment\n  mail )",
    "paren3 IN 300 TXT ( \"a ( b\" ; (\n \"c\" )\nafter A 192.0.2.57",
    "@ 3600 IN NS (\n ns3.example.net. )",
    'txt2 300 IN TXT "a b" "" c\n  IN TXT "blank owner"\n  600 TXT "and a TTL"',  # TTL and class before strings
    # Records the fast loop leaves to the reference parser, that record alone.
    "esc TXT \"a\\065\"",
    "caf\u00e9 A 192.0.2.56",  # non-ASCII owner
    "esc\\.dot MX 10 mail\n  AAAA 2001:db8::56\nlong TXT " + "x" * 300 + "\nq\\065 CNAME \"mail\"",
    "_acme-challenge.e\\120 2 TXT tok\\101n",  # clamped and overridden, read by the reference
    "x.\\@ 1 PTR host.example.net.\n  PTR o\\.dd.example.net.",
    "mx9 MX 1 \\110othing",  # a warning about a record read by the reference
]
# Each line, appended to RICH, breaks a whole-zone rule: the fast path
# refuses the zone with the reference path's error, worded by ``rules``.
BROKEN = [
    "alias A 192.0.2.52",  # CNAME beside data
    "ns.sub TXT glue",  # data below a cut
    "sub2 NS ns.sub2",  # missing glue
    "x.sub NS ns.example.net.",  # nested delegation
    "@ SOA ns1 hostmaster 1 2 3 4 5",  # a second SOA
    "dyn DYNA weighted!pool",  # a DYNA, and no plugins to check it
]
# Each line, appended to RICH, makes the reference path fail: the loader
# refuses the zone itself, with the reference's error (an unterminated quote
# at the end of the file is tests/test_zonefile.py's: a quoted string may now
# go on over several lines, so the reference's words no longer fit).
REFUSED = [
    "out.example.net. TXT not glue",  # only addresses may be outside the zone
    "paren A ( 192.0.2.55",  # '(' without ')'
    "paren A 192.0.2.55 )",  # ')' without '('
    "paren A ( ( 192.0.2.55 ) )",  # nested
    "$INCLUDE inc/missing",
    "bad A 300.1.2.3",
]


@pytest.mark.parametrize("line", REFUSED)
def test_refused_zones_name_the_line_appended(tmp_path: Path, line: str) -> None:
    """The zone's own error at its line (the reference's words: ``test_loader_result_matches_the_reference_either_way``)."""
    path = write(tmp_path, RICH + "$ORIGIN @Z\n" + line + "\n")
    with pytest.raises(ZoneError) as got:
        fastload.load_zone(str(path), APEX, ZoneSettings())
    assert (got.value.path, got.value.line) == (str(path), RICH.count("\n") + 2)


@pytest.mark.parametrize("line", BROKEN)
def test_broken_zones_are_refused_as_the_reference_refuses_them(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, RICH + "$ORIGIN @Z\n" + line + "\n")
    with pytest.raises(ZoneError) as fast:
        fastload.load_zone(str(path), APEX, ZoneSettings())
    with pytest.raises(ZoneError) as ref:
        reference(path, ZoneSettings())
    assert str(fast.value) == str(ref.value)


def _fast_and_reference(path: Path, settings: ZoneSettings, caplog: pytest.LogCaptureFixture) -> None:
    """The fast path's zone and warnings (file:line) are the reference path's."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        fast = fastload.load_zone(str(path), APEX, settings)
    fast_log = [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        ref = reference(path, settings)
    assert fast == ref
    assert fast_log == [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("line", WARNED + LAID_OUT)
def test_warnings_and_layouts_take_the_fast_path(tmp_path: Path, line: str, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, RICH + "$ORIGIN @Z\n" + line + "\n")
    _fast_and_reference(path, ZoneSettings(), caplog)


@pytest.mark.parametrize("line", [line for line in WARNED if line != "t2 2 A 192.0.2.50"])  # a clamp never is
def test_warnings_are_errors_when_strict_either_way(tmp_path: Path, line: str) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    # The SOA's TTL at its MINIMUM: the rule's warning is the zone's first.
    path = write(zones, RICH.replace("@ 1D IN SOA", "@ 900 IN SOA") + "$ORIGIN @Z\n" + line + "\n")
    settings = ZoneSettings(strict_data=True)
    with pytest.raises(ZoneError) as ref:
        reference(path, settings)
    with pytest.raises(ZoneError) as got:
        load_zones(zones, settings)
    assert str(got.value) == str(ref.value)
    assert "(an error because zones_strict_data is set)" in str(ref.value)
    line_number = int(str(ref.value).split(":")[1])
    assert RICH.count("\n") + 2 <= line_number <= RICH.count("\n") + 1 + len(line.splitlines())  # a line appended


@pytest.mark.parametrize("line", [line for line in WARNED if line != "t2 2 A 192.0.2.50"])  # a clamp never is
def test_strict_warnings_are_errors_on_the_fast_path(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, RICH.replace("@ 1D IN SOA", "@ 900 IN SOA") + "$ORIGIN @Z\n" + line + "\n")
    settings = ZoneSettings(strict_data=True)
    with pytest.raises(ZoneError) as fast:
        fastload.load_zone(str(path), APEX, settings)
    with pytest.raises(ZoneError) as ref:
        reference(path, settings)
    assert str(fast.value) == str(ref.value)


@pytest.mark.parametrize("line", BROKEN + REFUSED + WARNED + LAID_OUT)
def test_loader_result_matches_the_reference_either_way(tmp_path: Path, line: str) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    path = write(zones, RICH + "$ORIGIN @Z\n" + line + "\n")
    (zones / "inc").mkdir()
    (zones / "inc" / "other").write_text("inc A 192.0.2.60\n")
    try:
        expected: object = reference(path, ZoneSettings())
    except ZoneError as exc:
        expected = str(exc)
    try:
        got: object = load_zones(zones, ZoneSettings()).zones[APEX]
    except ZoneError as exc:
        got = str(exc)
    assert got == expected


def test_includes_take_the_fast_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Included files' records, warnings (with their own file and line) and scoping, as the reference reads them."""
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "hosts").write_text(
        "$TTL 120\n"  # stays inside
        "inc A 192.0.2.60\n"
        "@F TXT file-origin\n"
        "mxi MX 10 nothing.@Z\n"  # a warning in this file
        "t 1 A 192.0.2.61\n"  # clamped
        "$INCLUDE deeper sub\n"  # relative to this file's directory, origin relative to the current one
        "after CNAME nowhere.x.example.org.\n"
    )
    (tmp_path / "inc" / "deeper").write_text("@ A 192.0.2.62\nmulti A 192.0.2.63\nptr PTR mail.example.org.\n")
    text = (
        RICH
        + "$ORIGIN o2.@Z\n$INCLUDE inc/hosts\n"
        + "back A 192.0.2.64\n"  # $TTL 300 again
        + "$INCLUDE \"inc/hosts\" other.@Z\n"
        + "multi A 192.0.2.65\n"  # an RRset with records before, inside and after an include
    )
    path = write(tmp_path, text.replace("multi A 192.0.2.20\n", "multi A 192.0.2.20\n$INCLUDE inc/deeper @Z\n"))
    _fast_and_reference(path, ZoneSettings(), caplog)
    assert f"{tmp_path / 'inc' / 'hosts'}:4: in rrset 'mxi.o2.example.org. MX'" in caplog.text
    assert f"{tmp_path / 'inc' / 'deeper'}:3: name 'ptr.example.org.': PTR" in caplog.text
    assert f"{tmp_path / 'inc' / 'hosts'}:5: name 't.other.example.org.': TTL 1 too small" in caplog.text


@pytest.mark.parametrize("threads", [1, 2])
def test_a_refused_record_is_reported_without_reading_the_zone_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    zones = tmp_path / "zones"
    zones.mkdir()
    filler = "".join(f"f{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(300))
    path = write(zones, RICH + "$ORIGIN @Z\nbad A 300.1.2.3\n" + filler + "worse A 1.2.3\n")
    with pytest.raises(ZoneError) as ref:
        reference(path, ZoneSettings())
    expected = str(ref.value)
    with pytest.raises(ZoneError) as got:
        load_zones(zones, ZoneSettings(threads=threads))
    assert str(got.value) == expected
    assert f"{path}:{RICH.count(chr(10)) + 2}: IPv4 address '300.1.2.3' invalid" in expected


@pytest.mark.parametrize("mode", ["one process", "workers", "pieces"])
def test_every_warning_the_same_however_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """Each warning, with its file and line, as the reference path writes it, in each loading mode."""
    zones = tmp_path / "zones"
    zones.mkdir()
    filler = "".join(f"f{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(200))
    text = RICH.replace("  NS NS2.example.org.\n", "").replace("SOA ns1 ", "SOA ns3 ")  # one NS; MNAME
    for line in WARNED:
        text += "$ORIGIN @Z\n" + line + "\n" + filler.replace("f", f"f{len(text)}-")
    path = write(zones, text)
    for name in ("a.example", "z.example"):  # more zones, so that several share the workers
        (zones / name).write_text(RICH.replace("example.org", name))
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        expected = reference(path, ZoneSettings())
    reference_log = [r.getMessage() for r in caplog.records]
    assert len(reference_log) > len(WARNED)
    threads = 1
    if mode == "workers":
        monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
        threads = 3
    elif mode == "pieces":
        monkeypatch.setattr(parallel, "SPLIT_BYTES", len(text) // 2)
        threads = 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        got = load_zones(zones, ZoneSettings(threads=threads)).zones[APEX]
    assert got == expected
    own = [message for message in (r.getMessage() for r in caplog.records) if message.startswith(str(path))]
    assert own == reference_log


def test_warnings_about_an_rrset_in_reading_order_across_an_include(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "part").write_text("a 2 TXT inside\n")
    path = write(tmp_path, RICH + "$ORIGIN @Z\na 2 TXT before\n$INCLUDE inc/part\na 2 TXT after\n")
    _fast_and_reference(path, ZoneSettings(), caplog)
    assert [r.getMessage().split(":")[0] for r in caplog.records][-3:] == [str(path), str(tmp_path / "inc" / "part"), str(path)]


def test_one_ns_and_mname_warned_on_the_fast_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one_ns = RICH.replace("  NS NS2.example.org.\n", "")
    _fast_and_reference(write(tmp_path, one_ns), ZoneSettings(), caplog)
    assert "only has one NS record" in caplog.text
    other_mname = RICH.replace("SOA ns1 ", "SOA ns3 ")
    _fast_and_reference(write(tmp_path, other_mname), ZoneSettings(), caplog)
    assert "SOA MNAME does not match" in caplog.text
    multi_line_soa = RICH.replace("SOA ns1 Hostmaster.Example.ORG. 2024010101", "SOA ns1 (\n Hostmaster.Example.ORG. ; who\n 2024010101")
    multi_line_soa = multi_line_soa.replace(" 3w 900\n", " 3w\n 900 )\n")
    _fast_and_reference(write(tmp_path, multi_line_soa), ZoneSettings(), caplog)
    assert ":2: zone 'example.org.': SOA TTL 86400 > ncache field 900" in caplog.text


def test_good_test_zones_equal_the_reference() -> None:
    good = DATA / "good"
    for path in sorted(p for p in good.iterdir() if p.is_file()):
        apex = names.from_text(path.name.replace("@", "/") + ".")
        ref = reference_results.reference(path, apex, ZoneSettings())
        assert load_zones(good, ZoneSettings()).zones[apex] == ref


def _many_zones(zones_dir: Path, count: int) -> dict[bytes, str]:
    """``count`` zones, every few of them irregular (warnings or errors left to the reference path)."""
    zones_dir.mkdir()
    expected = {}
    for i in range(count):
        name = f"z{i}.example"
        text = RICH.replace("example.org", name)
        if i % 5 == 3:
            text += "ttlmix 300 A 192.0.2.7\nttlmix 600 A 192.0.2.8\n"  # a TTL warning: reference path
        (zones_dir / name).write_text(text)
        expected[names.from_text(name + ".")] = name
    return expected


def test_parallel_batch_equals_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
    zones_dir = tmp_path / "zones"
    expected = _many_zones(zones_dir, 12)
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        single = load_zones(zones_dir, ZoneSettings(threads=1))
    one_process_log = [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        spread = load_zones(zones_dir, ZoneSettings(threads=3))
    assert set(spread.zones) == set(expected)
    assert list(spread.zones) == list(single.zones)
    assert spread == single
    # Same warnings, same order (the workers' SOA warnings are replayed in file order).
    assert [r.getMessage() for r in caplog.records] == one_process_log
    assert len(one_process_log) > 12


def test_parallel_batch_first_error_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
    zones_dir = tmp_path / "zones"
    _many_zones(zones_dir, 8)
    (zones_dir / "z6.example").write_text(RICH.replace("example.org", "z6.example") + "bad A 300.1.2.3\n")
    (zones_dir / "z7.example").write_text("@ SOA broken\n")
    with pytest.raises(ZoneError) as spread:
        load_zones(zones_dir, ZoneSettings(threads=2))
    with pytest.raises(ZoneError) as single:
        load_zones(zones_dir, ZoneSettings(threads=1))
    assert str(spread.value) == str(single.value)
    assert ":" + str(RICH.count("\n") + 1) + ":" in str(spread.value)


def test_split_file_equals_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    lines = [RICH]
    for i in range(400):
        # Owners that come back in a later piece, $ORIGIN and $TTL changes across the cut points.
        lines.append(f"h{i % 50} A 10.0.{i // 256}.{i % 256}\n")
        if i % 7 == 0:
            # A second type for a name, maybe in another piece: a lone RRset becomes a dict.
            lines.append(f"h{(i * 3) % 50} AAAA 2001:db8::{i:x}\n")
        if i % 97 == 0:
            lines.append(f"$TTL {300 + i}\n$ORIGIN s{i}.@Z\n@ TXT piece{i}\n")
    path = write(tmp_path, "".join(lines))
    for threads in (2, 3, 7):
        zone = parallel._split(str(path), APEX, ZoneSettings(threads=threads))
        assert zone is not None
        assert zone == reference(path, ZoneSettings())
    assert parallel._split(str(path), APEX, ZoneSettings(threads=4)) == fastload.load_zone(
        str(path), APEX, ZoneSettings()
    )


def test_split_pieces_start_on_owner_lines(tmp_path: Path) -> None:
    text = RICH + "".join(f"m{i} A 10.0.0.{i}\n  AAAA 2001:db8::{i}\n" for i in range(100))
    cuts = pieces.split(text, APEX, ZoneSettings(), 5)
    assert len(cuts) == 5
    assert cuts[0][0] == 0 and cuts[-1][1] == len(text)
    ends = [begin for begin, _, _ in cuts[1:]] + [len(text)]
    for (begin, end, start), following in zip(cuts, ends, strict=True):
        assert end == following
        assert begin == 0 or text[begin] not in " \t$;"
        assert start.line == text.count("\n", 0, begin) + 1
    irregular = RICH + "$ORIGIN elsewhere.example.net.\n" + text[len(RICH) :]
    with pytest.raises(parsing.Irregular):
        pieces.split(irregular, APEX, ZoneSettings(), 2)


def test_split_rrset_with_disagreeing_ttls_in_two_pieces_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    filler = "".join(f"f{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(400))
    mixed = "mixed 300 A 192.0.2.1\nmixed 600 A 192.0.2.2\n"
    path = write(tmp_path, RICH + mixed + filler + mixed.replace(".1\n", ".3\n").replace(".2\n", ".4\n") + filler.replace("f", "g"))
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        expected = reference(path, ZoneSettings())
    reference_log = [r.getMessage() for r in caplog.records]
    for threads in (2, 3):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
            assert parallel._split(str(path), APEX, ZoneSettings(threads=threads)) == expected
        assert [r.getMessage() for r in caplog.records] == reference_log


def test_split_rrset_whose_first_ttls_disagree_across_pieces_is_read_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    zones = tmp_path / "zones"
    zones.mkdir()
    filler = "".join(f"f{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(400))
    path = write(zones, RICH + "mixed 300 A 192.0.2.1\n" + filler + "mixed 600 A 192.0.2.2\n" + filler.replace("f", "g"))
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        expected = reference(path, ZoneSettings())
    reference_log = [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        assert load_zones(zones, ZoneSettings(threads=3)).zones[APEX] == expected
    assert [r.getMessage() for r in caplog.records] == reference_log
    assert any("should agree (using 300)" in message for message in reference_log)


@pytest.mark.parametrize(
    "tail",
    [
        # In a worker's piece, a name with two types (a dict node) before a name with one.
        "{filler}q1 A 192.0.2.8\nq1 2 TXT t\nzz 2 A 192.0.2.9\n{filler}",
        # ACME TXT records in several pieces: each its own warning.
        "_acme-challenge TXT one\n{filler}_acme-challenge TXT two\n{filler}_acme-challenge TXT three\n",
        # An $INCLUDE in the last piece.
        "{filler}{filler}$INCLUDE inc/part\n",
    ],
)
def test_split_warnings_as_one_pass_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tail: str
) -> None:
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    filler = "".join(f"f{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(150))
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "part").write_text("inc 2 A 192.0.2.60\nmx MX 1 nowhere\n")
    text = RICH + "$ORIGIN @Z\n" + tail.replace("{filler}", filler)
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
        expected = reference(path, ZoneSettings())
    reference_log = [r.getMessage() for r in caplog.records]
    for threads in (2, 3):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "pygdnsd.zones"):
            assert parallel._split(str(path), APEX, ZoneSettings(threads=threads)) == expected
        assert [r.getMessage() for r in caplog.records] == reference_log


def test_split_never_cuts_inside_parentheses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    # Continuation lines at the start of a line read like owner lines: no piece may start on one.
    records = "".join(f"p{i} TXT ( \"a{i}\"\nb{i}\n\"c\" ) ; (\nq{i} A 10.0.0.{i % 256}\n" for i in range(300))
    path = write(tmp_path, RICH + records)
    text = path.read_text()
    for parts in (2, 3, 7):
        for begin, _end, _start in pieces.split(text, APEX, ZoneSettings(), parts)[1:]:
            assert text[begin] in "pq"
    for threads in (2, 3, 7):
        assert parallel._split(str(path), APEX, ZoneSettings(threads=threads)) == reference(path, ZoneSettings())


def test_split_first_piece_takes_its_share(tmp_path: Path) -> None:
    text = RICH + "".join(f"m{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(2000))
    for parts, share in ((2, 0.56), (3, 0.4)):
        cuts = pieces.split(text, APEX, ZoneSettings(), parts, share)
        assert len(cuts) == parts
        first = cuts[0][1] / len(text)
        assert share <= first < share + 0.01
        rest = [(end - begin) / len(text) for begin, end, _ in cuts[1:]]
        assert max(rest) - min(rest) < 0.01
    path = write(tmp_path, text)
    assert parallel._split(str(path), APEX, ZoneSettings(threads=3)) == reference(path, ZoneSettings())


def _delegations_apart(glue: str = "", extra: str = "") -> str:
    """Cuts at the top, their glue and the names pointing into them at the bottom: every piece holds a part."""
    cuts = "".join(f"d{i} NS ns.d{i}\nd{i} NS ns.example.net.\n" for i in range(60))
    cuts += "deep.e NS ns.deep.e\ndeep.e NS ns1\n"
    filler = "".join(f"f{i} A 10.1.{i // 256}.{i % 256}\n" for i in range(600))
    tail = "".join(f"ns.d{i} A 10.2.0.{i}\nm{i} MX 10 ns.d{i}\nc{i} CNAME x.d{i}\n" for i in range(60))
    tail += "ns.deep.e AAAA 2001:db8::e\n"
    return RICH + cuts + filler + tail + glue + extra


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "d7 NS ns2.d7\nns2.d7 A 10.3.0.7\n",  # a cut's NS records in two pieces
        "ns.d3 TXT not glue\n",  # data below a cut, its cut in another piece
        "unused.d5 A 10.3.0.5\n",  # glue no NS record names
        "d9.d8 NS ns.example.net.\n",  # a cut below another piece's cut
        "mx2 MX 10 d2\n",  # an MX target at a cut
        "cn CNAME d4\n",  # a CNAME to a cut
    ],
)
def test_split_delegations_across_pieces_equal_one_pass(tmp_path: Path, extra: str) -> None:
    path = write(tmp_path, _delegations_apart(extra=extra))
    try:
        expected: model.Zone | str = fastload.load_zone(str(path), APEX, ZoneSettings())
    except ZoneError as exc:  # a broken rule: the reference's error, however the zone is read
        expected = str(exc)
        with pytest.raises(ZoneError) as ref:
            reference(path, ZoneSettings())
        assert expected == str(ref.value)
    else:
        assert expected == reference(path, ZoneSettings())
    for threads in (2, 3, 5):
        try:
            got: model.Zone | str = parallel._split(str(path), APEX, ZoneSettings(threads=threads))
        except ZoneError as exc:
            got = str(exc)
        assert got == expected


def _piece_contents(piece: parsing.ZonePiece) -> tuple[object, ...]:
    soa = piece.soa
    return (
        piece.nodes, piece.targets, list(piece.target_lines), piece.deep, soa and (soa.owner, soa.ttl, soa.rdata, soa.line)
    )


@pytest.mark.parametrize(("block", "batch"), [(1, 1), (7, 3), (65536, 2048)])
def test_parse_piece_reads_a_file_text_or_lines_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, batch: int
) -> None:
    # A comment in the middle: the batches around it are not clean, the others are.
    # The SOA on line 4, after a comment and a blank line.
    head = "; head\n\n"
    text = head + RICH + "".join(f"n{i} A 10.0.0.{i}\n" for i in range(50)) + "; note\nlast A 10.0.1.1\n"
    path = write(tmp_path, text)
    monkeypatch.setattr(parsing, "_BLOCK", block)
    monkeypatch.setattr(parsing, "_BATCH", batch)
    with open(path, encoding="utf-8", newline="") as handle:
        from_file = _piece_contents(parsing.parse_piece(handle, str(path), APEX, ZoneSettings()))
    from_text = _piece_contents(parsing.parse_piece(text, str(path), APEX, ZoneSettings()))
    from_lines = _piece_contents(
        parsing.parse_piece(text.splitlines(keepends=True), str(path), APEX, ZoneSettings())
    )
    assert from_file == from_text == from_lines
    assert from_file[4] is not None and from_file[4][3] == 4  # the SOA's line


def test_a_full_target_cache_starts_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "_TARGETS_CACHED", 2)
    cnames = "".join(f"c{i} CNAME {'mail' if i % 2 else 'ns1'}\n" for i in range(20))
    # Delegations whose glue names are built on the cached owner's (or not, once cleared).
    cuts = "".join(f"d{i} NS ns1.d{i}\n  NS NS2.D{i}.example.org.\nns1.d{i} A 192.0.2.{i}\nns2.d{i} A 192.0.2.{i}\n" for i in range(6))
    path = write(tmp_path, RICH + "$ORIGIN @Z\n" + cnames + cuts)
    assert fastload.load_zone(str(path), APEX, ZoneSettings()) == reference(path, ZoneSettings())


def test_an_rrset_whose_ttls_disagree_across_an_include_reads_as_the_reference(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once left to a slower whole-file reader: the included file is read where it is included."""
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "more").write_text("$ORIGIN @Z\nmulti 60 A 192.0.2.99\nmx5 MX 1 nothing\n")
    path = write(tmp_path, RICH + "$ORIGIN @Z\n$INCLUDE inc/more\n$ORIGIN x\\.y.@Z\nq A 192.0.2.1\n")
    _fast_and_reference(path, ZoneSettings(), caplog)
    assert any("should agree" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("strict", [False, True])
def test_warnings_before_a_cname_chain_are_written_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, strict: bool
) -> None:
    """As the reference path did (checked on this zone before it was removed): the MX warning first,
    then the chain's error; under strict_data the warning is the error."""
    path = write(tmp_path, RICH + "$ORIGIN @Z\nmx2 MX 1 nothing\nc1 CNAME c2\nc2 CNAME c1\n")
    first = RICH.count("\n") + 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, "pygdnsd.zones"), pytest.raises(ZoneError) as got:
        fastload.load_zone(str(path), APEX, ZoneSettings(strict_data=strict))
    no_addresses = "in rrset 'mx2.example.org. MX', same-zone target 'nothing.example.org.' has no addresses"
    if strict:
        assert str(got.value) == f"{path}:{first}: {no_addresses} (an error because zones_strict_data is set)"
    else:
        assert str(got.value) == (
            f"{path}:{first + 1}: CNAME 'c1.example.org.' leads to a CNAME chain more than 16 deep (a loop?) within the zone"
        )
        assert f"{path}:{first}: {no_addresses}" in [r.getMessage() for r in caplog.records]
