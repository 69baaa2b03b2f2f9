"""The vscf parser: every syntax feature of ``man gdnsd.config`` and each error's message."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from pygdnsd.config.vscf import (
    MAX_INCLUDE_DEPTH,
    ConfigHash,
    ConfigList,
    ConfigScalar,
    parse_bytes,
    parse_file,
    scalar_bytes,
)
from pygdnsd.errors import ConfigError


def parse(text: str | bytes) -> ConfigHash | ConfigList:
    return parse_bytes(text.encode() if isinstance(text, str) else text, "cfg")


def error(text: str | bytes) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_man_page_examples_parse_the_same() -> None:
    expected = {"options": {"listen": ["192.0.2.1", "192.0.2.2"]}}
    assert parse("options = {\n  listen = [ 192.0.2.1, 192.0.2.2 ],\n}\n") == expected
    assert parse('"options" => {\n  listen => [ 192.0.2.1 192.0.2.2 ]\n}\n') == expected
    assert parse("options={listen=[192.0.2.1 192.0.2.2]}") == expected


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("example", "example"),
        ('"example"', "example"),
        ("ex\\097mpl\\e", "example"),
        ('"ex\\097mpl\\e"', "example"),
        ('internal\\"doublequote', 'internal"doublequote'),
        ('"internal\\"doublequote"', 'internal"doublequote'),
        ("white\\ space", "white space"),
        ('"white space"', "white space"),
        ('"braces{every[where]oh}my"', "braces{every[where]oh}my"),
        ("braces\\{every\\[where\\]oh\\}my", "braces{every[where]oh}my"),
        ('"\\\\==="', "\\==="),
        ('"\\092==="', "\\==="),
        ('"\\092\\=\\=\\="', "\\==="),
        ("\\\\\\=\\=\\=", "\\==="),
        ("\\092\\=\\=\\=", "\\==="),
        ("a$b:c>d/e", "a$b:c>d/e"),
        ('"a\nb"', "a\nb"),
        ('""', ""),
    ],
)
def test_man_page_escaping_examples(written: str, value: str) -> None:
    assert parse(f"k => {written}\n") == {"k": value}


def test_scalars_keep_raw_bytes_and_quoting() -> None:
    top = parse(b'a => "\\255\\000x", b => \xc3\xa9\n')
    assert isinstance(top, ConfigHash)
    a, b = top["a"], top["b"]
    assert isinstance(a, ConfigScalar) and isinstance(b, ConfigScalar)
    assert scalar_bytes(a) == b"\xff\x00x"
    assert b == "é"
    assert a.quoted and not b.quoted


def test_comments_commas_and_nesting() -> None:
    text = "# shell\na => { b = [ x, [ y ] { z => w }, ], ; zone style\n c => {} },\nd => []\n"
    assert parse(text) == {"a": {"b": ["x", ["y"], {"z": "w"}], "c": {}}, "d": []}


def test_top_level_array_and_empty_file() -> None:
    assert parse("[ a, b ]\n") == ["a", "b"]
    assert parse("") == {}
    assert parse("# nothing\n") == {}


def test_positions_name_file_and_line() -> None:
    top = parse("\n\na => {\n  b => [\n    c\n  ]\n}\n")
    assert isinstance(top, ConfigHash)
    a = top["a"]
    assert isinstance(a, ConfigHash)
    b = a["b"]
    assert isinstance(b, ConfigList)
    assert str(a.pos) == "cfg:3" and str(top.key_pos["a"]) == "cfg:3"
    assert str(b.pos) == "cfg:4" and str(b[0].pos) == "cfg:5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a => b ,,\n", "cfg:1: syntax error: expected a hash key, found ','"),
        ("a => [ , b ]\n", "cfg:1: syntax error: expected a value, found ','"),
        ("a => {}\n\nb = > c\n", "cfg:3: syntax error: expected '=>' or '=' after key 'c'"),
        ("a b\n", "cfg:1: syntax error: expected '=>' or '=' after key 'a'"),
        ("a => $b\n", "cfg:1: syntax error: '$' may only start '$include{...}'"),
        ("a => x=y\n", "cfg:1: syntax error: expected a hash key, found '='"),
        ('a => "\\256"\n', "cfg:1: syntax error: escape '\\256' is above 255"),
        ("a => \\25x\n", "cfg:1: syntax error: '\\' followed by a digit needs exactly 3 digits"),
        ("{ }\n", "cfg:1: syntax error: expected a hash key, found '{'"),
        ("[ a ] b\n", "cfg:1: syntax error: nothing may follow a top-level array"),
        ("a => b\n\na => c\n", "cfg:3: duplicate hash key 'a'"),
        ("a => {\r\n}\r\n", "cfg:1: syntax error: expected '=>' or '=' after key '\\r'"),
        (
            "a => {}\n\n# no newline",
            "cfg:3: incomplete or unparseable record at end of file (missing newline at end of file?)",
        ),
        ('a => "x\n\n', "cfg:2: incomplete or unparseable record at end of file"),
        (
            "a => b",
            "cfg:1: incomplete or unparseable record at end of file (missing newline at end of file?)",
        ),
        ("a => [\n", "cfg:1: incomplete or unparseable record at end of file"),
        (
            "a => $incl",
            "cfg:1: incomplete or unparseable record at end of file (missing newline at end of file?)",
        ),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert "nesting deeper than" in error("a => " + "[" * 5000 + "\n")


def write(root: Path, files: dict[str, str | None]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text)


def test_include_value_and_merge_contexts(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "config": 'a => $include{ "list" }\nb => { $include{b.d}, z => 1 }\n$include{sub/top}\n',
            "list": "[ x, y ]\n",
            "b.d/1": "p => q\n",
            "b.d/2": "r => s\n",
            "b.d/.hidden": "p => nope\n",
            "sub/top": "c => $include{nested}\n",
            "sub/nested": "n => v\n",
        },
    )
    assert parse_file(tmp_path / "config") == {
        "a": ["x", "y"],
        "b": {"p": "q", "r": "s", "z": "1"},
        "c": {"n": "v"},
    }


def test_include_of_empty_dir_drops_the_value(tmp_path: Path) -> None:
    write(tmp_path, {"config": "a => $include{empty}\nb => [ $include{empty} ]\n", "empty": None})
    assert parse_file(tmp_path / "config") == {"b": []}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"config": "a => $include{nope}\n"},
            "{d}/config:1: cannot include '{d}/nope': no such file",
        ),
        (
            {"config": "a => { $include{x*} }\n"},
            "{d}/config:1: cannot include '{d}/x*': no such file",
        ),
        (
            {"config": "a => $include{d}\n", "d/1": "[ a ]\n", "d/2": "[ b ]\n"},
            "{d}/config:1: cannot include multiple files in value context",
        ),
        (
            {"config": "a => { k => 1\n $include{o} }\n", "o": "k => 2\n"},
            "{d}/config:2: included file '{d}/o' has duplicate key 'k' when merging into parent hash",
        ),
        (
            {"config": "a => { $include{o} }\n", "o": "[ a ]\n"},
            "{d}/config:1: included file '{d}/o' is an array, a hash is needed here",
        ),
        (
            {"config": "a => $include{o}\n", "o": "\n\n[ a ,, ]\n"},
            "{d}/o:3: syntax error: expected a value, found ',' (included from {d}/config:1)",
        ),
        (
            {"config": "a => { $include{d} }\n", "d/x/y": "k => v\n"},
            "{d}/config:1: cannot include '{d}/d/x': not a regular file",
        ),
        (
            {"config": "a => $include {o}\n", "o": "[ a ]\n"},
            "{d}/config:1: syntax error: '$' may only start '$include{...}'",
        ),
    ],
)
def test_include_errors(tmp_path: Path, files: dict[str, str | None], message: str) -> None:
    write(tmp_path, files)
    with pytest.raises(ConfigError) as info:
        parse_file(tmp_path / "config")
    assert str(info.value) == message.replace("{d}", str(tmp_path))


def test_self_include_stops_at_the_depth_limit(tmp_path: Path) -> None:
    # gdnsd 3.8.1 itself crashes (SIGSEGV) on this.
    write(tmp_path, {"config": "a => $include{config}\n"})
    with pytest.raises(ConfigError) as info:
        parse_file(tmp_path / "config")
    assert f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels" in str(info.value)


def test_unreadable_main_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        parse_file(tmp_path)


def test_random_bytes_only_ever_raise_config_error() -> None:
    rng = random.Random(1234)
    alphabet = b'{}[]=>,;#"\\$ \t\n\r\x00abc019include'
    for _ in range(3000):
        length = rng.randrange(0, 60)
        if rng.random() < 0.5:
            data = bytes(rng.choice(alphabet) for _ in range(length))
        else:
            data = rng.randbytes(length)
        with contextlib.suppress(ConfigError):
            parse_bytes(data, "fuzz")
