"""The master-file reader on its own: tokens, TTLs, owners, origins, includes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygdnsd.errors import ZoneError
from pygdnsd.zones import model, names
from pygdnsd.zones.rdata import parse_ttl
from pygdnsd.zones.zonefile import ParseOptions, Record, parse_zone_file, tokenize

APEX = names.from_text("example.com.")


def parse(tmp_path: Path, text: str, **files: str) -> list[Record]:
    for rel, body in files.items():
        target = tmp_path / rel.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    path = tmp_path / "example.com"
    path.write_text(text)
    return parse_zone_file(str(path), APEX, ParseOptions())


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
    records = parse(
        tmp_path,
        "$TTL 1h\n"
        "www 300 IN A 192.0.2.1\n"
        "    IN 600 A 192.0.2.2 ; blank owner: previous one\n"
        "mx ( MX\n  10 Mail.Example.NET. )\n"
        "@ A 192.0.2.3\n"
        "x.@ A 192.0.2.4\n"
        '"q" A 192.0.2.5\n',
    )
    owners = [names.to_text(r.owner) for r in records]
    assert owners == [
        "www.example.com.", "www.example.com.", "mx.example.com.", "example.com.",
        "x.\\@.example.com.", "q.example.com.",
    ]
    assert [r.ttl for r in records] == [300, 600, 3600, 3600, 3600, 3600]
    assert records[2].rtype == model.MX
    assert records[2].rdata == b"\x00\x0a" + names.from_text("mail.example.net.")
    assert [r.line for r in records] == [2, 3, 4, 6, 7, 8]


def test_include_paths_origins_and_scoping(tmp_path: Path) -> None:
    records = parse(
        tmp_path,
        "$ORIGIN o\n$INCLUDE inc/a sub\nafter A 192.0.2.9\n",
        inc__a="$TTL 60\n$ORIGIN deeper\nx A 192.0.2.1\n$ORIGIN y.@F\nz A 192.0.2.2\n"
        "$ORIGIN @Z\nw A 192.0.2.3\n$INCLUDE b\n",
        inc__b="v A 192.0.2.4\n",
    )
    got = [(names.to_text(r.owner), r.ttl, Path(r.path).name, r.line) for r in records]
    assert got == [
        ("x.deeper.sub.o.example.com.", 60, "a", 3),
        ("z.y.sub.o.example.com.", 60, "a", 5),
        ("w.example.com.", 60, "a", 7),
        ("v.example.com.", 60, "b", 1),  # nested include: relative to inc/, inherits $TTL and origin
        ("after.o.example.com.", 86400, "example.com", 3),
    ]


def test_blank_owner_needs_a_previous_owner(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match=r"example.com:1: record with a blank owner"):
        parse(tmp_path, "  A 192.0.2.1\n")


def test_include_loop_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match="nested more than"):
        parse(tmp_path, "$INCLUDE inc/self\n", inc__self="$INCLUDE self\n")


def test_dynamic_records_parse(tmp_path: Path) -> None:
    records = parse(tmp_path, "www 600/10 DYNA geoip!www\nalias DYNC weighted!x\n")
    assert [(r.rtype, r.ttl, r.rdata) for r in records] == [
        (model.DYNA, 600, b"geoip!www"), (model.DYNC, 86400, b"weighted!x"),
    ]



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
