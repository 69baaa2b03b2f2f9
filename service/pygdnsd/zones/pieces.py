"""A big zone file cut into pieces that several processes parse at once (see ``parallel``).

A piece starts on a line that names its owner, never inside a record in
parentheses, and carries the ``$ORIGIN``/``$TTL`` in force and its first
line's number (``parsing.Start``), so each piece reads as it would in one pass.
"""

from __future__ import annotations

import itertools
import re

from pygdnsd.errors import ZoneError
from pygdnsd.zones import names
from pygdnsd.zones.parsing import Irregular, RelativeNames, Start, directive, open_at_end, tokenize
from pygdnsd.zones.rdata import parse_ttl
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.source import open_zone_text

_DIRECTIVE_RE = re.compile(r"^\$[^\n]*", re.MULTILINE)


def read_text(path: str) -> str:
    try:
        with open_zone_text(path) as handle:
            text = handle.read()
    except ZoneError:
        raise Irregular("unreadable") from None  # one pass words it
    if "\r" in text:
        raise Irregular("carriage return")
    return text


def split(
    text: str,
    apex: bytes,
    settings: ZoneSettings,
    parts: int,
    first_share: float | None = None,
    shares: list[float] | None = None,
) -> list[tuple[int, int, Start]]:
    """``text`` cut into about ``parts`` (start, end, state) pieces, each starting on an owner line.

    The first piece is ``first_share`` of the text (by default, as large as
    the others); or each piece its fraction of ``shares``, in order.
    """
    size = len(text)
    if shares is None:
        first = 1 / parts if first_share is None else first_share
        shares = [first] + [(1 - first) / (parts - 1)] * (parts - 1) if parts > 1 else [1.0]
    cuts = [0]
    for bound in itertools.accumulate(shares[:-1]):
        pos = text.find("\n", int(size * bound))
        # Move on to a line that names its owner, so no piece starts with a blank owner.
        while pos != -1 and pos + 1 < size and text[pos + 1] in " \t\n;$":
            pos = text.find("\n", pos + 1)
        if pos == -1 or pos + 1 >= size:
            break
        pos = _clean_start(text, pos)
        if pos + 1 > cuts[-1] and not _inside_parentheses(text, pos):
            cuts.append(pos + 1)
    cuts.append(size)
    namer = RelativeNames(apex)
    default_ttl = settings.default_ttl
    pieces = []
    line = 1
    done = 0
    for begin, end in itertools.pairwise(cuts):
        for match in _DIRECTIVE_RE.finditer(text, done, begin):
            try:
                tokens = tokenize(match.group())
                directive(tokens, namer)
            except (ValueError, names.NameError_):
                raise Irregular("directive") from None  # one pass words it
            if tokens[0].upper() == "$TTL":
                default_ttl = parse_ttl(tokens[1])
        line += text.count("\n", done, begin)
        done = begin
        pieces.append((begin, end, Start(line, namer.origin, default_ttl)))
    return pieces


def _inside_parentheses(text: str, pos: int) -> bool:
    """Whether the line after ``pos`` continues a record in parentheses (no place to cut), or may.

    Only when a ``(`` comes after the last ``)`` are the lines since read.
    """
    opened = text.rfind("(", 0, pos)
    if opened <= text.rfind(")", 0, pos):
        return False
    return open_at_end(text[text.rfind("\n", 0, opened) + 1 : pos].split("\n"))


# How far ``_clean_start`` looks for a better place to cut.
_CLEAN_LINES = 256


def _clean_start(text: str, pos: int) -> int:
    """``pos`` (the newline before an owner line), or a newline a few lines on before a new name below the origin.

    A piece starting there parts no RRset and, in the usual layout (a cut's
    NS records, then its glue), no cut from its glue: the pieces then
    check their glue alone (see ``_glue_across``), and merge fewer names.
    Only a preference: any owner line is a correct place to cut.
    """
    before = text[text.rfind("\n", 0, pos) + 1 : pos]
    owner = before.split(None, 1)[0] if before[:1] not in ("", " ", "\t") else None
    at = pos
    for _ in range(_CLEAN_LINES):
        end = text.find("\n", at + 1)
        if end == -1:
            break
        line = text[at + 1 : end]
        if line[:1] not in ("", " ", "\t", ";", "$"):
            previous = owner
            owner = line.split(None, 1)[0]
            if owner != previous and "." not in owner and owner != "@":
                return at
        at = end
    return pos


