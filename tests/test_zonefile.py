"""The zone-file syntax on its own (``parsing``): tokens, TTLs, owners, origins, layouts, includes, input safety."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from pygdnsd.errors import ZoneError
from pygdnsd.zones import fastload, model, names, parsing
from pygdnsd.zones.parsing import ZonePiece, tokenize
from pygdnsd.zones.rdata import parse_ttl
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.source import open_zone_text

APEX = names.from_text("example.com.")
SOA_AND_NS = "@ SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns2 A 192.0.2.2\n"


def name(text: str) -> bytes:
    return names.from_text(text if text.endswith(".") else text + ".example.com.")


def write(tmp_path: Path, text: str, **files: str) -> Path:
    for rel, body in files.items():
        target = tmp_path / rel.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    path = tmp_path / "example.com"
    path.write_text(text)
    return path


def parse(tmp_path: Path, text: str, watch: tuple[str, ...] = (), **files: str) -> ZonePiece:
    """The zone file ``text`` read by the parser (no whole-zone rules); the records at ``watch`` noted with their lines."""
    path = write(tmp_path, text, **files)
    with open_zone_text(str(path)) as handle:
        return parsing.parse_piece(
            handle, str(path), APEX, ZoneSettings(), watch=frozenset(name(owner) for owner in watch)
        )


def rrset(piece: ZonePiece, owner: str, rtype: int) -> model.RRset:
    return piece.nodes[name(owner)][rtype]


def noted(piece: ZonePiece, path: Path) -> list[tuple[str, int, str, int]]:
    """(owner, type, file name, line) of each watched record, in reading order."""
    out = []
    for owner, rtype, position in piece.noted:
        where, line = piece.where(str(path), position)
        out.append((names.to_text(owner), rtype, Path(where).name, line))
    return out


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("300", 300), ("30M", 1800), ("2h", 7200), ("3D", 259200), ("1w", 604800), ("4294967296", 0)],
)
def test_ttl_values(text: str, value: int) -> None:
    assert parse_ttl(text) == value


@pytest.mark.parametrize("text", ["5s", "1h30m", "1x", "", "-1", "h"])
def test_ttl_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid TTL"):
        parse_ttl(text)


def test_tokenize_quotes_escapes_comments() -> None:
    assert tokenize('a TXT "x ; y" b\\ c ; comment') == ["a", "TXT", '"x ; y"', "b\\ c"]
    assert tokenize("www ( MX 10") == ["www", "(", "MX", "10"]
    with pytest.raises(ValueError):
        tokenize('a TXT "open')


def test_owners_ttl_class_and_parentheses(tmp_path: Path) -> None:
    piece = parse(
        tmp_path,
        "$TTL 1h\n"
        "www 300 IN A 192.0.2.1\n"
        "    IN 600 A 192.0.2.2 ; blank owner: previous one\n"
        "mx ( MX\n  10 Mail.Example.NET. )\n"
        "@ A 192.0.2.3\n"
        "x.@ A 192.0.2.4\n"
        '"q" A 192.0.2.5\n',
        watch=("www", "mx", "example.com.", "x.\\@", "q"),
    )
    assert rrset(piece, "www", model.A) == model.RRset(model.A, 300, (bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])))
    assert rrset(piece, "mx", model.MX) == model.RRset(
        model.MX, 3600, (b"\x00\x0a" + names.from_text("mail.example.net."),)
    )
    assert rrset(piece, "example.com.", model.A).ttl == 3600
    assert rrset(piece, "x.\\@", model.A).rdatas == (bytes([192, 0, 2, 4]),)
    assert rrset(piece, "q", model.A).rdatas == (bytes([192, 0, 2, 5]),)
    assert [line for _, _, _, line in noted(piece, tmp_path / "example.com")] == [2, 3, 4, 6, 7, 8]


def test_include_paths_origins_and_scoping(tmp_path: Path) -> None:
    piece = parse(
        tmp_path,
        "$ORIGIN o\n$INCLUDE inc/a sub\nafter A 192.0.2.9\n",
        watch=("x.deeper.sub.o", "z.y.sub.o", "w", "v", "after.o"),
        inc__a="$TTL 60\n$ORIGIN deeper\nx A 192.0.2.1\n$ORIGIN y.@F\nz A 192.0.2.2\n"
        "$ORIGIN @Z\nw A 192.0.2.3\n$INCLUDE b\n",
        inc__b="v A 192.0.2.4\n",
    )
    assert noted(piece, tmp_path / "example.com") == [
        ("x.deeper.sub.o.example.com.", model.A, "a", 3),
        ("z.y.sub.o.example.com.", model.A, "a", 5),
        ("w.example.com.", model.A, "a", 7),
        ("v.example.com.", model.A, "b", 1),  # nested include: relative to inc/, inherits $TTL and origin
        ("after.o.example.com.", model.A, "example.com", 3),
    ]
    assert [rrset(piece, owner, model.A).ttl for owner in ("x.deeper.sub.o", "w", "v", "after.o")] == [
        60, 60, 60, 86400,
    ]


def test_a_blank_owner_before_any_owner_is_the_zone(tmp_path: Path) -> None:
    """As gdnsd 3.8.1 (its own suite's 002simple zone): ``$TTL`` then an indented SOA. In an included
    file too, whatever its origin; ``$ORIGIN`` keeps the owner written last (checked with gdnsd)."""
    piece = parse(
        tmp_path,
        "$TTL 86400\n"
        "\tSOA ns1 hostmaster ( 1 7200 3600 1209600 3600 )\n"
        "\tNS ns1\n"
        "before TXT one\n"
        "$INCLUDE inc/part sub\n"
        "\tTXT after-include\n"
        "$ORIGIN other.@Z\n"
        "\tTXT after-origin\n",
        inc__part="\tTXT first-in-include\nin2 TXT two\n",
    )
    assert piece.soa is not None and (piece.soa.owner, piece.soa.line) == (APEX, 2)
    assert rrset(piece, "example.com.", model.NS).rdatas == (name("ns1"),)
    assert rrset(piece, "example.com.", model.TXT).rdatas == (b"\x10first-in-include",)
    assert rrset(piece, "before", model.TXT).rdatas == (b"\x03one", b"\x0dafter-include", b"\x0cafter-origin")
    assert rrset(piece, "in2.sub", model.TXT).rdatas == (b"\x03two",)


def test_a_quoted_string_may_hold_a_newline(tmp_path: Path) -> None:
    """gdnsd's suite zone (002simple): the newline is part of the string, and later lines keep their numbers."""
    piece = parse(
        tmp_path,
        'x.y.z\tTXT\t"\\010\\000\\0259 stuff \\"\\\\"\t"asdf""xyz\n"\n'
        't TXT "ab\ncd ; not a comment\n(" ( "in parentheses\n" ; a comment\n )\n'
        "after A 192.0.2.1\n",
        watch=("after",),
    )
    escaped = b'\n\x00\x199 stuff "\\'
    assert rrset(piece, "x.y.z", model.TXT).rdatas == (bytes([len(escaped)]) + escaped + b"\x04asdf\x04xyz\n",)
    spanning = b"ab\ncd ; not a comment\n("
    assert rrset(piece, "t", model.TXT).rdatas == (bytes([len(spanning)]) + spanning + b"\x0fin parentheses\n",)
    assert noted(piece, tmp_path / "example.com") == [("after.example.com.", model.A, "example.com", 8)]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('ok A 192.0.2.1\nodd TXT "a" "b\nc A 192.0.2.2\n', 2, "unterminated quoted string (no closing quote"),
        ("ok A 192.0.2.1\nparen A ( 192.0.2.55\nc A 192.0.2.2\n", 2, "'(' without a matching ')'"),
        ("ok A 192.0.2.1\nc A 192.0.2.2 )\n", 2, "')' without a matching '('"),
        ("ok A 192.0.2.1\np MX ( 10\n ( mail ) )\n", 3, "nested parentheses"),
        ("ok A 192.0.2.1\nc A 192.0.2.2 \\\n", 2, "stray backslash"),
        ("ok A 192.0.2.1\nc A 192.0.2.2\r\n", 2, "carriage return"),
        ('ok A 192.0.2.1\nt TXT ( "a"\n "b\r\n" )\n', 3, "carriage return"),
    ],
)
def test_layout_errors_name_their_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    with pytest.raises(ZoneError) as got:
        parse(tmp_path, text)
    assert (got.value.path, got.value.line) == (str(tmp_path / "example.com"), line)
    assert problem in got.value.problem


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        # A record's error before a layout error, and the other way round: the first in the file.
        ("bad A 300.1.2.3\n" + "ok A 192.0.2.1\n" * 6000 + "p MX ( 10 ( mail ) )\n", 1, "IPv4 address"),
        ("p MX ( 10 ( mail ) )\n" + "ok A 192.0.2.1\n" * 6000 + "bad A 300.1.2.3\n", 1, "nested parentheses"),
        ("ok A 192.0.2.1\n" * 6000 + "$TTL 1x\n" + "p MX ( 10\n" * 2, 6001, "invalid TTL '1x'"),
        ("ok A 192.0.2.1\n" * 6000 + "p MX ( 10\n\n(\n" + "$GENERATE 1-2 a A 1.2.3.4\n", 6003, "nested"),
    ],
)
def test_the_first_error_in_file_order(tmp_path: Path, text: str, line: int, problem: str) -> None:
    """However the file falls into blocks and batches (more than one of each here)."""
    with pytest.raises(ZoneError) as got:
        parse(tmp_path, text)
    assert got.value.line == line
    assert problem in got.value.problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("$TTL\n", "$TTL takes exactly one TTL value"),
        ("$ORIGIN a b\n", "$ORIGIN takes exactly one name"),
        ("$ORIGIN example.net.\n", "origin 'example.net.' is not within this zonefile's zone"),
        ("$ORIGIN a\\.b.example.net.\n", "origin 'a\\.b.example.net.' is not within"),  # read slowly, still refused
        ("$GENERATE 1-2 a A 1.2.3.4\n", "unsupported directive $GENERATE"),
        ("$INCLUDE\n", "$INCLUDE takes a file name and an optional origin"),
        ("$INCLUDE inc/x example.net.\n", "origin 'example.net.' is not within"),
        ("$INCLUDE inc/missing\n", "$INCLUDE inc/missing: cannot open zone file for reading"),
    ],
)
def test_directive_errors_name_their_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ZoneError) as got:
        parse(tmp_path, "ok A 192.0.2.1\n" + text)
    assert got.value.line == 2
    assert problem in got.value.problem


def test_include_loop_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match="nested more than"):
        parse(tmp_path, "$INCLUDE inc/self\n", inc__self="$INCLUDE self\n")


def test_an_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    with pytest.raises(ZoneError) as got:
        parse(tmp_path, "ok A 192.0.2.1\n$INCLUDE inc/part\n", inc__part="fine A 192.0.2.2\nbad A 1.2.3\n")
    assert (Path(got.value.path or ""), got.value.line) == (tmp_path / "inc" / "part", 2)


def test_dynamic_records_parse(tmp_path: Path) -> None:
    piece = parse(tmp_path, "www 600/10 DYNA geoip!www\nalias DYNC weighted!x\n")
    assert [(r.rtype, r.ttl, r.dyn_min, r.rdata, r.line) for r in piece.dynamic] == [
        (model.DYNA, 600, 10, b"geoip!www", 1), (model.DYNC, 86400, 0, b"weighted!x", 2),
    ]


def _refused_at_once(tmp_path: Path, target: str) -> ZoneError:
    """Loading a zone that ``$INCLUDE``s ``target``: the error, which must come within seconds (a FIFO must not block)."""
    path = write(tmp_path, SOA_AND_NS + f"$INCLUDE {target}\n")
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            fastload.load_zone(str(path), APEX, ZoneSettings())
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(10.0)
    assert outcome, f"$INCLUDE {target} still loading after {time.monotonic() - started:.1f} s"
    error = outcome[0]
    assert isinstance(error, ZoneError), error
    assert (error.path, error.line) == (str(path), SOA_AND_NS.count("\n") + 1)
    return error


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_an_include_of_a_device_is_refused_at_once(tmp_path: Path, target: str) -> None:
    """gdnsd: "not a regular file". Reading /dev/zero once grew checkconf to 10 GB in 20 s."""
    error = _refused_at_once(tmp_path, target)
    assert error.problem.startswith(f"$INCLUDE {target}: not a regular file")


def test_an_include_of_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Opening a FIFO blocks until a writer comes (gdnsd 3.8.1 hangs there): it is refused without waiting."""
    os.mkfifo(tmp_path / "pipe")
    error = _refused_at_once(tmp_path, str(tmp_path / "pipe"))
    assert "not a regular file" in error.problem


def test_an_include_of_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    assert "$INCLUDE inc: not a regular file" in _refused_at_once(tmp_path, "inc").problem


def test_a_zone_file_that_is_no_longer_a_regular_file_is_refused(tmp_path: Path) -> None:
    """The loader lists regular files only, but one may be replaced by a FIFO before it is read."""
    os.mkfifo(tmp_path / "example.com")
    with pytest.raises(ZoneError) as got:
        fastload.load_zone(str(tmp_path / "example.com"), APEX, ZoneSettings())
    assert (got.value.path, got.value.problem[:21]) == (str(tmp_path / "example.com"), "not a regular file (a")


def test_a_file_is_read_no_further_than_its_size_when_opened(tmp_path: Path) -> None:
    """A file that grows while it is read (a log someone pointed at) is read as it was."""
    path = tmp_path / "growing"
    path.write_text("a A 192.0.2.1\n")
    with open_zone_text(str(path)) as handle, open(path, "a") as writer:
        writer.write("b A 192.0.2.2\n")
        writer.flush()
        assert handle.read() == "a A 192.0.2.1\n"


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"\x00", "."),
        (b"\x03www\x07Example\x03com\x00", "www.Example.com."),
        (b"\x01*\x04_sip\x04_tcp\x00", "*._sip._tcp."),
        (b"\x03a.b\x02c\\\x00", "a\\.b.c\\\\."),  # a dot and a backslash inside labels
        (b'\x05a b"@\x03;$(\x00', 'a\\ b\\"\\@.\\;\\$\\(.'),
        (b"\x02\x00\xff\x01\x7f\x00", "\\000\\255.\\127."),
    ],
)
def test_names_to_text_escapes_only_what_needs_it(wire: bytes, text: str) -> None:
    assert names.to_text(wire) == text


def test_everyday_layouts_never_take_the_slower_record_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: no zone is read slowly because of its layout; a rare record alone is (here, one escape)."""
    slow: list[int] = []
    read = parsing._OneRecord.read

    def counted(self: parsing._OneRecord, line: str, number: int, *rest: object) -> object:
        slow.append(number)
        return read(self, line, number, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(parsing._OneRecord, "read", counted)
    everyday = (
        "$TTL 1h\n"
        "\tSOA ns1 hostmaster (\n\t\t1 ; serial\n\t\t7200 3600 1209600\n\t\t300 ) ; minimum\n"
        "\tIN NS ns1\n@ 3600 IN NS ns2\n"
        "ns1 IN 300 A 192.0.2.1\nns2 300 IN A 192.0.2.2\n  IN AAAA 2001:db8::2\n"
        '@ IN TXT "v=spf1 -all" "two"\n_sip._tcp SRV 10 20 5060 ns1\nwww CNAME ns1 ; a comment\n'
        'long TXT "a string\nover two lines"\n'
        "$INCLUDE inc/hosts\n"
    )
    parse(tmp_path, everyday, inc__hosts="h1 A 192.0.2.3\nh2 ( A\n 192.0.2.4 )\n")
    assert slow == []
    parse(tmp_path, everyday + "odd\\.name A 192.0.2.5\nlast A 192.0.2.6\n")
    assert slow == [everyday.count("\n") + 1]
