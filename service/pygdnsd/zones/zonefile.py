"""The slow reader: RFC 1035 master files as gdnsd 3.8.1 reads them, text in, ``Record`` list out.

The fast loop (``parsing``) hands it the records it does not read itself,
one at a time (escapes, long TXT strings, DYNA/DYNC), and the files whose
layout it refuses as a whole (``fastload.load_slowly``); its refusals are
worded for the operator. This module knows the file syntax (directives,
owners, TTL/class fields, parentheses, quoting, ``$INCLUDE``); what a
record's rdata means is ``rdata.py``'s job, and whether the records make a
sane zone is ``rules.py``'s.

Facts checked against the real gdnsd 3.8.1:

* TTLs are digits with at most one unit letter from ``mhdw`` (any case);
  ``s`` and combined units (``1h30m``) are parse errors. Values wrap at 2^32.
* TTL and class may come in either order; the only class is ``IN``.
* ``$INCLUDE`` paths are relative to the directory of the including file;
  its optional origin is relative to the current origin, and ``$ORIGIN`` or
  ``$TTL`` changes inside the included file do not leak out of it.
* ``@Z`` / ``@F`` are the zone name / the file's starting origin, alone or as
  the last label of a name; ``x.@`` is a literal label ``@``.
* Every ``$ORIGIN`` and owner must be within the zone (out-of-zone owners
  are allowed for A/AAAA only, as glue; ``rules.py`` warns about those).
* ``$GENERATE``, ``$ADDR_LIMIT_V4/V6`` and unknown directives are errors,
  and so is a carriage return (DOS line ending).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pygdnsd.config.options import Config
from pygdnsd.errors import ZoneError
from pygdnsd.zones import model, names, rdata
from pygdnsd.zones.rdata import parse_ttl
from pygdnsd.zones.settings import ZoneSettings

# gdnsd refuses deeper nesting long before this; it stops include loops.
MAX_INCLUDE_DEPTH = 16

_DYN_TTL_RE = re.compile(r"([0-9]+[mMhHdDwW]?)(?:/([0-9]+[mMhHdDwW]?))?")
# A token is a quoted string, a parenthesis, a comment, or a run of other
# characters in which a backslash escapes the next one.
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[()]|;.*|(?:[^\s"();\\]|\\.)+|\\|"', re.DOTALL)
_SPECIAL = frozenset('"();\\')


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as read, before any zone-level checks or clamping.

    ``ttl`` is the TTL written (or the ``$TTL`` default). For DYNA/DYNC
    ``rdata`` is the ``plugin!resource`` text (utf-8), ``ttl`` the MAX of
    the ``MAX/MIN`` syntax and ``dyn_min`` its MIN (0 when not written:
    gdnsd then takes half of MAX, and so it does for a written 0).
    """

    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes
    path: str
    line: int
    dyn_min: int = 0


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """The settings that change how records read (defaults: the config's)."""

    default_ttl: int = Config.zones_default_ttl
    text_autosplit: bool = not Config.disable_text_autosplit

    @classmethod
    def of(cls, settings: ZoneSettings) -> ParseOptions:
        return cls(default_ttl=settings.default_ttl, text_autosplit=settings.text_autosplit)


def tokenize(text: str) -> list[str]:
    """Split one physical line into tokens (quotes kept, comment dropped)."""
    if not _SPECIAL.intersection(text):
        return text.split()
    out = []
    for tok in _TOKEN_RE.findall(text):
        if tok.startswith(";"):
            break
        if tok == '"' or tok == "\\":
            raise ValueError("unterminated quoted string or stray backslash")
        out.append(tok)
    return out


def _logical_lines(text: str) -> Iterator[tuple[int, bool, list[str]]]:
    """(first line number, starts with blank, tokens) per entry, parentheses joined."""
    pending: list[str] = []
    depth = 0
    start = 0
    blank = False
    for number, line in enumerate(text.split("\n"), 1):
        if "\r" in line:
            raise ZoneError("carriage return in zone file (DOS line endings are not accepted)", None, number)
        try:
            tokens = tokenize(line)
        except ValueError as exc:
            raise ZoneError(str(exc), None, number) from None
        if depth == 0:
            if not tokens:
                continue
            start = number
            blank = line[:1] in (" ", "\t")
            pending = []
        for tok in tokens:
            if tok == "(":
                depth += 1
                if depth > 1:
                    raise ZoneError("nested parentheses", None, number)
            elif tok == ")":
                if depth == 0:
                    raise ZoneError("')' without a matching '('", None, number)
                depth -= 1
            else:
                pending.append(tok)
        if depth == 0 and pending:
            yield start, blank, pending
            pending = []
    if depth:
        raise ZoneError("'(' without a matching ')' before end of file", None, start)


@dataclass
class FileState:
    path: str
    origin: bytes
    file_origin: bytes
    default_ttl: int
    owner: bytes | None = None
    context: rdata.RdataContext | None = None


class Parser:
    def __init__(self, apex: bytes, options: ParseOptions) -> None:
        self.apex = apex
        self.options = options
        self.records: list[Record] = []

    def resolve(self, text: str, state: FileState) -> bytes:
        """A name from the file: ``@``, ``@Z``, ``@F`` and relative names resolved."""
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            text = text[1:-1]
        if text == "@Z":
            return self.apex
        if text == "@F":
            return state.file_origin
        if text.endswith(".@Z") and not text.endswith("\\.@Z"):
            return names.from_text(text[:-3], self.apex)
        if text.endswith(".@F") and not text.endswith("\\.@F"):
            return names.from_text(text[:-3], state.file_origin)
        plain = names.from_text_plain(text, state.origin)
        return plain if plain is not None else names.from_text(text, state.origin)

    def in_zone_name(self, text: str, state: FileState, what: str) -> bytes:
        name = self.resolve(text, state)
        if not names.is_within(name, self.apex):
            raise ValueError(
                f"{what} '{names.to_text(name)}' is not within this zonefile's zone ({names.to_text(self.apex)})"
            )
        return name

    def parse_file(self, path: str, state: FileState, depth: int) -> None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                text = handle.read()
        except OSError as exc:
            raise ZoneError(f"cannot open zone file for reading: {exc.strerror}", path) from None
        entries = _logical_lines(text)
        while True:
            try:
                entry = next(entries)
            except StopIteration:
                return
            except ZoneError as exc:
                raise ZoneError(exc.problem, path, exc.line) from None
            number, blank, tokens = entry
            try:
                if tokens[0].startswith("$") and not blank:
                    self.directive(tokens, state, depth, number)
                else:
                    self.record(tokens, blank, state, number)
            except (ValueError, names.NameError_) as exc:
                raise ZoneError(str(exc), path, number) from None

    def directive(self, tokens: list[str], state: FileState, depth: int, number: int) -> None:
        name = tokens[0].upper()
        args = tokens[1:]
        if name == "$TTL":
            if len(args) != 1:
                raise ValueError("$TTL takes exactly one TTL value")
            state.default_ttl = parse_ttl(args[0])
        elif name == "$ORIGIN":
            if len(args) != 1:
                raise ValueError("$ORIGIN takes exactly one name")
            state.origin = self.in_zone_name(args[0], state, "origin")
            state.owner = None
        elif name == "$INCLUDE":
            if len(args) not in (1, 2):
                raise ValueError("$INCLUDE takes a file name and an optional origin")
            if depth >= MAX_INCLUDE_DEPTH:
                raise ValueError(f"$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)")
            target = args[0].strip('"')
            include_path = os.path.join(os.path.dirname(state.path), target)
            origin = state.origin
            if len(args) == 2:
                origin = self.in_zone_name(args[1], state, "origin")
            inner = FileState(include_path, origin, origin, state.default_ttl)
            try:
                self.parse_file(include_path, inner, depth + 1)
            except ZoneError as exc:
                if exc.path == include_path and exc.line is None:
                    raise ValueError(f"$INCLUDE {target}: {exc.problem}") from None
                raise
        else:
            raise ValueError(f"unsupported directive {tokens[0]} (gdnsd knows $TTL, $ORIGIN, $INCLUDE)")

    def record(self, tokens: list[str], blank: bool, state: FileState, number: int) -> None:
        pos = 0
        if blank:
            if state.owner is None:
                raise ValueError("record with a blank owner but no previous owner")
            owner = state.owner
        else:
            owner = self.resolve(tokens[0], state)
            state.owner = owner
            pos = 1
        ttl: int | None = None
        dyn_min = 0
        ttl_text: str | None = None
        seen_class = False
        for _ in range(2):
            if pos >= len(tokens):
                break
            tok = tokens[pos]
            if ttl_text is None and tok[:1].isdigit():
                ttl_text = tok
                pos += 1
            elif not seen_class and tok.upper() == "IN":
                seen_class = True
                pos += 1
            elif not seen_class and tok.upper() in ("CH", "HS", "CS", "ANY", "NONE"):
                raise ValueError(f"class {tok} not supported: all records must be class IN")
        if pos >= len(tokens):
            raise ValueError("record has no type")
        type_text = tokens[pos].upper()
        rtype = rdata.type_code(type_text)
        if ttl_text is not None:
            if rtype in (model.DYNA, model.DYNC):
                dyn = _DYN_TTL_RE.fullmatch(ttl_text)
                if dyn is None:
                    raise ValueError(f"invalid DYNA/DYNC TTL {ttl_text!r} (MAX or MAX/MIN)")
                ttl = parse_ttl(dyn.group(1))
                if dyn.group(2) is not None:
                    dyn_min = parse_ttl(dyn.group(2))
            else:
                ttl = parse_ttl(ttl_text)
        if ttl is None:
            ttl = state.default_ttl
        if rtype == model.SOA and owner != self.apex:
            raise ValueError("SOA record can only be defined for the root of the zone")
        # A relative owner is below the origin, which is inside the zone: no check needed.
        absolute = blank or tokens[0].endswith(".") or "@" in tokens[0]
        if absolute and not names.is_within(owner, self.apex) and rtype not in (model.A, model.AAAA):
            raise ValueError(
                f"name '{names.to_text(owner)}' is not within this zonefile's zone ({names.to_text(self.apex)})"
            )
        context = state.context
        if context is None:
            context = state.context = rdata.RdataContext(
                lambda text: self.resolve(text, state), self.options.text_autosplit
            )
        wire = rdata.encode(rtype, type_text, tokens[pos + 1 :], context)
        self.records.append(Record(owner, rtype, ttl, wire, state.path, number, dyn_min))


def parse_zone_file(path: str, apex: bytes, options: ParseOptions) -> list[Record]:
    """Every record of the zone file at ``path`` (includes followed), in file order.

    Raises ``ZoneError`` naming file and line for the first syntax problem.
    """
    parser = Parser(apex, options)
    parser.parse_file(path, FileState(path, apex, apex, options.default_ttl), 0)
    return parser.records
