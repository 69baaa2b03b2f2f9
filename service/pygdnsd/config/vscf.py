"""Parser for vscf, the data language of gdnsd's ``config`` file (``man gdnsd.config``).

A file is an implicit hash (``key => value`` pairs) or a ``[ ... ]`` array.
Values are ordered hashes, arrays or string scalars. The result is built from
plain Python containers (``ConfigHash`` is a ``dict``, ``ConfigList`` a
``list``, ``ConfigScalar`` a ``str``) that also carry the source position, so
later checks can name ``file:line``.

Scalars are bytes in the file; they become ``str`` through UTF-8 with
``surrogateescape``, so arbitrary bytes survive: ``scalar_bytes`` gets them back.

Quirks kept on purpose because gdnsd 3.8.1 has them (checked against it):
only space, tab and newline are whitespace (a CR is scalar data, so CRLF files
fail); a comment or unquoted scalar cut off by the end of the file is an
error; a value-context ``$include`` of an empty directory makes the key (or
array item) vanish.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from pygdnsd.errors import ConfigError

# Deeper nesting than this is surely not a real config, and Python's own
# recursion limit must never be what stops the parser.
MAX_NESTING = 100
# gdnsd itself crashes on a self-include; we stop at this depth instead.
MAX_INCLUDE_DEPTH = 16

WHITESPACE = b" \t\n"
# Bytes that end an unquoted scalar besides whitespace (man gdnsd.config).
UNQUOTED_STOP = b'][}{;#,"=\\' + WHITESPACE
DIGITS = b"0123456789"


@dataclass(frozen=True)
class Position:
    """Where a value starts: file path and 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class ConfigScalar(str):
    """A string value; ``quoted`` tells whether it was written in double quotes."""

    pos: Position
    quoted: bool

    def __new__(cls, text: str, pos: Position, quoted: bool = False) -> ConfigScalar:
        obj = super().__new__(cls, text)
        obj.pos = pos
        obj.quoted = quoted
        return obj


class ConfigList(list["ConfigValue"]):
    """An array value."""

    pos: Position

    def __init__(self, pos: Position) -> None:
        super().__init__()
        self.pos = pos


class ConfigHash(dict[str, "ConfigValue"]):
    """An ordered hash value; ``key_pos`` gives where each key was written."""

    pos: Position
    key_pos: dict[str, Position]

    def __init__(self, pos: Position) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos = {}


ConfigValue: TypeAlias = ConfigHash | ConfigList | ConfigScalar


def scalar_bytes(text: str) -> bytes:
    """The exact bytes a scalar had in the file (inverse of the decoding above)."""
    return text.encode("utf-8", "surrogateescape")


def parse_file(path: Path) -> ConfigHash | ConfigList:
    """Parse one vscf file (following its ``$include``s)."""
    return _parse_path(Path(path), include_depth=0)


def parse_bytes(data: bytes, path: str = "<string>") -> ConfigHash | ConfigList:
    """Parse vscf text; relative ``$include`` paths resolve against ``path``'s directory."""
    return _Parser(data, path, include_depth=0).parse_document()


def _parse_path(path: Path, include_depth: int) -> ConfigHash | ConfigList:
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return _Parser(data, str(path), include_depth).parse_document()


class _Incomplete(Exception):
    """The file ended in the middle of something."""


class _Parser:
    """Recursive descent over the bytes of one file."""

    def __init__(self, data: bytes, path: str, include_depth: int) -> None:
        self.data = data
        self.path = path
        self.include_depth = include_depth
        self.i = 0
        self.line = 1

    # -- errors -----------------------------------------------------------

    def _here(self) -> Position:
        return Position(self.path, self.line)

    def _syntax_error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.line}: syntax error: {what}")

    def _incomplete_error(self) -> ConfigError:
        # Like gdnsd: the line of the last byte, with a hint when the final
        # newline is missing (a trailing comment needs one too).
        ends_with_newline = self.data.endswith(b"\n")
        line = self.data.count(b"\n") + (0 if ends_with_newline else 1)
        hint = "" if ends_with_newline else " (missing newline at end of file?)"
        return ConfigError(
            f"{self.path}:{line}: incomplete or unparseable record at end of file{hint}"
        )

    # -- bytes --------------------------------------------------------------

    def _peek(self) -> int | None:
        return self.data[self.i] if self.i < len(self.data) else None

    def _advance(self) -> int:
        if self.i >= len(self.data):
            raise _Incomplete
        byte = self.data[self.i]
        self.i += 1
        if byte == 0x0A:
            self.line += 1
        return byte

    def _skip_space(self) -> None:
        while self.i < len(self.data):
            byte = self.data[self.i]
            if byte in WHITESPACE:
                self._advance()
            elif byte in b"#;":
                end = self.data.find(b"\n", self.i)
                if end < 0:
                    raise _Incomplete
                self.i = end
            else:
                return

    # -- grammar -------------------------------------------------------------

    def parse_document(self) -> ConfigHash | ConfigList:
        try:
            self._skip_space()
            if self._peek() == ord("["):
                top: ConfigHash | ConfigList = self._array(depth=0)
                self._skip_space()
                if self._peek() is not None:
                    raise self._syntax_error("nothing may follow a top-level array")
                return top
            return self._hash(depth=0, top_level=True)
        except _Incomplete:
            raise self._incomplete_error() from None

    def _hash(self, depth: int, top_level: bool = False) -> ConfigHash:
        if depth > MAX_NESTING:
            raise self._syntax_error(f"nesting deeper than {MAX_NESTING} levels")
        result = ConfigHash(self._here())
        if not top_level:
            self._advance()  # the opening brace
        while True:
            self._skip_space()
            byte = self._peek()
            if byte is None:
                if top_level:
                    return result
                raise _Incomplete
            if not top_level and byte == ord("}"):
                self._advance()
                return result
            if byte == ord("$"):
                self._include_merge(result)
            else:
                self._hash_entry(result, depth)
            self._skip_space()
            if self._peek() == ord(","):
                self._advance()

    def _hash_entry(self, result: ConfigHash, depth: int) -> None:
        key_pos = self._here()
        key = self._scalar("a hash key")
        self._skip_space()
        if self._peek() != ord("="):
            raise ConfigError(f"{key_pos}: syntax error: expected '=>' or '=' after key {key!r}")
        self._advance()
        if self._peek() == ord(">"):
            self._advance()
        self._skip_space()
        value = self._value(depth + 1)
        if value is None:
            return
        if key in result:
            raise ConfigError(f"{key_pos}: duplicate hash key {key!r}")
        result[key] = value
        result.key_pos[key] = key_pos

    def _array(self, depth: int) -> ConfigList:
        if depth > MAX_NESTING:
            raise self._syntax_error(f"nesting deeper than {MAX_NESTING} levels")
        result = ConfigList(self._here())
        self._advance()  # the opening bracket
        while True:
            self._skip_space()
            byte = self._peek()
            if byte is None:
                raise _Incomplete
            if byte == ord("]"):
                self._advance()
                return result
            value = self._value(depth + 1)
            if value is not None:
                result.append(value)
            self._skip_space()
            if self._peek() == ord(","):
                self._advance()

    def _value(self, depth: int) -> ConfigValue | None:
        """A value; ``None`` only for an include of an empty directory."""
        byte = self._peek()
        if byte is None:
            raise _Incomplete
        if byte == ord("{"):
            return self._hash(depth)
        if byte == ord("["):
            return self._array(depth)
        if byte == ord("$"):
            return self._include_value()
        return self._scalar("a value")

    def _scalar(self, what: str) -> ConfigScalar:
        pos = self._here()
        byte = self._peek()
        if byte is None:
            raise _Incomplete
        out = bytearray()
        if byte == ord('"'):
            self._advance()
            while True:
                byte = self._advance()
                if byte == ord('"'):
                    return ConfigScalar(_decode(out), pos, quoted=True)
                out.append(self._escape() if byte == ord("\\") else byte)
        if (byte in UNQUOTED_STOP and byte != ord("\\")) or byte == ord("$"):
            raise self._syntax_error(f"expected {what}, found {chr(byte)!r}")
        while True:
            byte = self._peek()
            if byte is None:
                # gdnsd cannot tell an unquoted scalar has ended without a
                # following byte, so this is an incomplete record there too.
                raise _Incomplete
            if byte == ord("\\"):
                self._advance()
                out.append(self._escape())
            elif byte in UNQUOTED_STOP:
                return ConfigScalar(_decode(out), pos)
            else:
                out.append(self._advance())

    def _escape(self) -> int:
        """The byte an escape stands for; the backslash is already consumed."""
        first = self._advance()
        if first not in DIGITS:
            return first
        digits = bytes([first, self._advance(), self._advance()])
        if any(d not in DIGITS for d in digits):
            raise self._syntax_error("'\\' followed by a digit needs exactly 3 digits")
        value = int(digits)
        if value > 255:
            raise self._syntax_error(f"escape '\\{digits.decode()}' is above 255")
        return value

    # -- includes ------------------------------------------------------------

    def _include_directive(self) -> tuple[Position, list[Path]]:
        pos = self._here()
        keyword = b"$include{"
        if not self.data.startswith(keyword, self.i):
            if keyword.startswith(self.data[self.i :]):
                raise _Incomplete
            raise self._syntax_error("'$' may only start '$include{...}'")
        for _ in keyword:
            self._advance()
        self._skip_space()
        target = self._scalar("an include path")
        self._skip_space()
        if self._peek() != ord("}"):
            if self._peek() is None:
                raise _Incomplete
            raise self._syntax_error("expected '}' closing '$include{'")
        self._advance()
        if self.include_depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{pos}: includes nested deeper than {MAX_INCLUDE_DEPTH} levels")
        return pos, self._include_files(pos, target)

    def _include_files(self, pos: Position, target: str) -> list[Path]:
        """The files an include names, sorted (man gdnsd.config, INCLUDING OTHER FILES)."""
        base = os.path.dirname(self.path)
        if os.path.isabs(target):
            pattern = target
        else:
            pattern = os.path.join(glob.escape(base), target) if base else target
        literal = os.path.join(base, target) if base and not os.path.isabs(target) else target
        if not glob.has_magic(target) and os.path.isdir(literal):
            pattern = os.path.join(glob.escape(literal), "*")
            return [Path(p) for p in sorted(glob.glob(pattern))]
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise ConfigError(f"{pos}: cannot include '{literal}': no such file")
        return [Path(p) for p in matches]

    def _load_included(self, pos: Position, path: Path) -> ConfigHash | ConfigList:
        if not path.is_file():
            raise ConfigError(f"{pos}: cannot include '{path}': not a regular file")
        try:
            return _parse_path(path, self.include_depth + 1)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (included from {pos})") from exc

    def _include_value(self) -> ConfigValue | None:
        pos, files = self._include_directive()
        if not files:
            return None
        if len(files) > 1:
            raise ConfigError(f"{pos}: cannot include multiple files in value context")
        return self._load_included(pos, files[0])

    def _include_merge(self, into: ConfigHash) -> None:
        pos, files = self._include_directive()
        for path in files:
            loaded = self._load_included(pos, path)
            if not isinstance(loaded, ConfigHash):
                raise ConfigError(
                    f"{pos}: included file '{path}' is an array, a hash is needed here"
                )
            for key, value in loaded.items():
                if key in into:
                    raise ConfigError(
                        f"{pos}: included file '{path}' has duplicate key {key!r} "
                        "when merging into parent hash"
                    )
                into[key] = value
                into.key_pos[key] = loaded.key_pos[key]


def _decode(raw: bytearray) -> str:
    return bytes(raw).decode("utf-8", "surrogateescape")
