"""The zone-file parser, the only one: RFC 1035 master files as gdnsd 3.8.1 reads them, into per-name nodes.

It reads the lines of a file, or of a piece of one (``pieces``), straight
into the final per-name nodes (names and TTLs cached, no per-record
objects: a ``Record`` per line, with the checks that once ran over every
record, took about 35 s for a 1M-record zone), keeping the line of each
record the whole-zone rules (``rules.py``) may speak of (NS, CNAME, PTR,
MX, SRV), and writes down the warnings a record earns on its own (a TTL
clamped, an ACME TXT's TTL overridden, TTLs that disagree in an RRset) with
their lines. A record over several lines (in parentheses, or with a quoted
string that holds a newline) is joined where it starts (``_Layout``);
``$INCLUDE``d files are read where they are included, into the same
nodes. A record the loop does not read itself (an escape in a name or a
TXT string, a TXT string to split, DYNA and DYNC, a rare type or layout) is
read more slowly, that record alone (``_OneRecord``), never the zone.
Every syntax error raises ``RefusedRecord`` (``file:line: problem``), the
first in file order; a whole-zone rule found broken while reading (a CNAME
beside other data, a second SOA) raises ``Broken``, for ``rules.worded``.
What a record's rdata means is ``rdata.py``'s job, and whether the records
make a sane zone is ``rules.py``'s.

Facts checked against the real gdnsd 3.8.1:

* TTLs are digits with at most one unit letter from ``mhdw`` (any case);
  ``s`` and combined units (``1h30m``) are parse errors. Values wrap at 2^32.
* TTL and class may come in either order; the only class is ``IN``.
* A blank owner is the last owner written in the same file; before any,
  the zone's name (in an ``$INCLUDE``d file too). ``$ORIGIN`` does not
  change it.
* A quoted string may go on over several lines: the newlines are part of it.
* ``$INCLUDE`` paths are relative to the directory of the including file;
  its optional origin is relative to the current origin, and ``$ORIGIN`` or
  ``$TTL`` changes inside the included file do not leak out of it. It must
  name a regular file (``source.py``).
* ``@Z`` / ``@F`` are the zone name / the file's starting origin, alone or as
  the last label of a name; ``x.@`` is a literal label ``@``.
* Every ``$ORIGIN`` and owner must be within the zone (out-of-zone owners
  are allowed for A/AAAA only, as glue; ``rules.py`` warns about those).
* ``$GENERATE``, ``$ADDR_LIMIT_V4/V6`` and unknown directives are errors,
  and so is a carriage return (DOS line ending).
"""

from __future__ import annotations

import array
import collections
import io
import itertools
import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pygdnsd.errors import ZoneError
from pygdnsd.zones import model, names, rdata
from pygdnsd.zones.messages import (
    MAX_NS_RRSET,
    acme_overridden,
    clamp_ttl,
    dynamic_rrset_and_warnings,
    ttls_disagree,
)
from pygdnsd.zones.model import Record
from pygdnsd.zones.rdata import parse_ttl
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.source import open_zone_text

_A, _AAAA, _NS, _CNAME, _PTR, _MX, _SRV, _TXT, _SOA = (
    model.A, model.AAAA, model.NS, model.CNAME, model.PTR, model.MX, model.SRV, model.TXT, model.SOA,
)
_DYNA, _DYNC = model.DYNA, model.DYNC
# The types whose rdata this module encodes itself; others go through rdata.encode.
_TYPES = {
    "A": _A, "AAAA": _AAAA, "NS": _NS, "CNAME": _CNAME, "PTR": _PTR, "MX": _MX, "SRV": _SRV,
    "TXT": _TXT, "SOA": _SOA, "NAPTR": model.NAPTR, "CAA": model.CAA,
}
_LOWER_TYPES = {**_TYPES, **{k.lower(): v for k, v in _TYPES.items()}}
_ONE_TARGET = frozenset((_CNAME, _NS, _PTR))
_POINTING = frozenset((_CNAME, _NS, _PTR, _MX, _SRV))  # the types whose records go to ZonePiece.targets
_TXT_NAMES = frozenset(name for name, rtype in _LOWER_TYPES.items() if rtype == _TXT)
_LENGTH_BYTES = tuple(bytes((length,)) for length in range(256))
_LENGTH_PREFIXES = _LENGTH_BYTES[: names.MAX_LABEL + 1]
_SPECIAL_RE = re.compile(r'["();\\\r]')
_UNQUOTED_SPECIAL_RE = re.compile(r"[();\\]")
# ``tokenize`` for a line whose only special characters are balanced quotes.
_QUOTED_RE = re.compile(r'"[^"]*"|[^\s"]+')
# A token of one line for ``tokenize``: a quoted string, a parenthesis, a comment, or a run of
# other characters in which a backslash escapes the next one (DOTALL: a record joined by
# ``_Layout`` may hold a quoted string with a newline in it).
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[()]|;.*|(?:[^\s"();\\]|\\.)+|\\|"', re.DOTALL)
_SPECIAL = frozenset('"();\\')
# A DYNA/DYNC TTL: MAX or MAX/MIN.
_DYN_TTL_RE = re.compile(r"([0-9]+[mMhHdDwW]?)(?:/([0-9]+[mMhHdDwW]?))?")
_ACME = b"\x0f_acme-challenge"
EMPTY_NODE: dict[int, model.RRset] = {}  # every empty non-terminal shares it: zones are never mutated
# gdnsd refuses deeper nesting long before this; it stops include loops.
MAX_INCLUDE_DEPTH = 16
_TARGETS_CACHED = 100_000  # names, per origin: bounds the cache's memory
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


_RRSET_SLOTS = vars(model.RRset)
_SET_RTYPE = _RRSET_SLOTS["rtype"].__set__
_SET_TTL = _RRSET_SLOTS["ttl"].__set__
_SET_RDATAS = _RRSET_SLOTS["rdatas"].__set__
_NEW = model.RRset.__new__


# A warning to write: (position, message).
Finding = tuple[int, str]
# A warning about a record: (owner, type, position, message). The reference
# writes them name by name in the order names first appear, then type by type.
Remark = tuple[bytes, int, int, str]
# Where a record is: its line, plus the number of the file it is in times this
# (0: the zone file; n: an included one, ``ZonePiece.files[n - 1]``).
POSITION_FILE = 1 << 32


def new_rrset(rtype: int, ttl: int, rdatas: tuple[bytes, ...]) -> model.RRset:
    """``model.RRset(...)`` without the frozen dataclass's __init__: a third faster, same object."""
    rrset = _NEW(model.RRset)
    _SET_RTYPE(rrset, rtype)
    _SET_TTL(rrset, ttl)
    _SET_RDATAS(rrset, rdatas)
    return rrset


def new_rrsets(rtypes: list[int], ttls: list[int], rdatas: list[tuple[bytes, ...]]) -> list[model.RRset]:
    """``new_rrset`` over columns, with the loops in C: no Python frame per RRset (``parallel``'s transfer)."""
    out = list(map(_NEW, itertools.repeat(model.RRset, len(rtypes))))
    for set_field, values in ((_SET_RTYPE, rtypes), (_SET_TTL, ttls), (_SET_RDATAS, rdatas)):
        collections.deque(map(set_field, out, values), maxlen=0)
    return out


class Irregular(Exception):
    """What the quick way does not read: inside the loop, a record for ``_OneRecord``; for a piece of
    a file (``pieces``), a reason to read the whole file in one pass. Never the zone's error: the
    message says why, for debugging."""


class Broken(Irregular):
    """A whole-zone rule the zone breaks, as found: ``rules.worded`` makes the operator's message.

    ``owner`` is the name the rule speaks of, ``targets`` the names it may
    speak of (NS targets without glue, cuts inside other delegations);
    ``at`` the file and line when the finder knows them, else the message's
    line is looked up when it is worded; ``message`` the words when the
    finder has them. ``before``: the warnings gdnsd writes before it finds
    this error (under ``zones_strict_data`` the first of them is the error).
    """

    def __init__(
        self,
        rule: str,
        owner: bytes = b"",
        targets: tuple[bytes, ...] = (),
        at: tuple[str, int] | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(rule)
        self.rule = rule
        self.owner = owner
        self.targets = targets
        self.at = at
        self.message = message
        self.before: list[Finding] = []


# The rules ``Broken`` names (``rules.worded`` words each).
NO_SOA = "no SOA"
SECOND_SOA = "SOA defined twice"
NO_NS = "no NS"
CNAME_BESIDE_DATA = "CNAME beside data"
TOO_MANY_NS = "too many NS"
NESTED_DELEGATION = "nested delegation"
DATA_AT_CUT = "data at a delegation"
DATA_BELOW_CUT = "data below a delegation"
GLUE_MISSING = "glue missing"
CNAME_CHAIN = "CNAME chain"
DYNA_BESIDE_ADDRESS = "DYNA beside A or AAAA"
DYNAMIC_PLACE_OR_TARGET = "DYNA/DYNC placement or target"


class RefusedRecord(ZoneError, Irregular):
    """A syntax error: a record, a directive or a layout the parser refuses, at its file and line.

    Read from the start of the zone's file in one pass, the first is the
    zone's first error, in file order, as gdnsd finds it: the caller may
    report it without reading the zone again. Read in a later piece of the
    file, it is only ``Irregular`` (an earlier piece may hold an earlier one).
    """


def within(name: bytes, apex: bytes) -> bool:
    if not name.endswith(apex):
        return False
    cut = len(name) - len(apex)
    pos = 0
    while pos < cut:
        pos += name[pos] + 1
    return pos == cut


class RelativeNames:
    """Presentation names -> wire, relative to the current origin; targets cached."""

    def __init__(self, apex: bytes) -> None:
        self.apex = apex
        self.origin = apex
        self.cache: dict[str, bytes] = {}

    def set_origin(self, origin: bytes) -> None:
        if origin != self.origin:
            self.origin = origin
            self.cache = {}

    def wire(self, text: str) -> bytes:
        """``text`` as a name; Irregular unless it is plain (see ``_plain``), ``@`` or ``x.@Z``."""
        # _plain, inlined: this runs for most names in rdata.
        if text.isascii() and "@" not in text and "\\" not in text and '"' not in text:
            low = text.lower()
            if "." not in low:
                if len(low) > names.MAX_LABEL:
                    raise Irregular("long label")
                wire = (chr(len(low)) + low).encode() + self.origin
                if len(wire) > names.MAX_NAME:
                    raise Irregular("long name")
                return wire
            if low[0] != "." and ".." not in low:
                if low[-1] == ".":
                    parts = low[:-1].split(".")
                    tail = b"\x00"
                else:
                    parts = low.split(".")
                    tail = self.origin
                if max(map(len, parts)) > names.MAX_LABEL:
                    raise Irregular("long label")
                wire = "".join([chr(len(part)) + part for part in parts]).encode() + tail
                if len(wire) > names.MAX_NAME:
                    raise Irregular("long name")
                return wire
        if text == "@":
            return self.origin
        if text == ".":
            return names.ROOT
        if text == "@Z":
            return self.apex
        if text.endswith(".@Z") and _plain(text[:-3]) and not text[:-3].endswith("."):
            saved = self.origin
            self.origin = self.apex
            try:
                return self.wire(text[:-3])
            finally:
                self.origin = saved
        raise Irregular(f"name {text!r}")

    def target(self, text: str) -> bytes:
        """``wire`` for names in rdata, which repeat (owners mostly do not)."""
        hit = self.cache.get(text)
        if hit is None:
            hit = self.wire(text)
            self.remember(text, hit)
        return hit

    def remember(self, text: str, wire: bytes) -> None:
        if len(self.cache) >= _TARGETS_CACHED:
            # Start again rather than stop: the names used next are most likely recent ones.
            self.cache.clear()
        self.cache[text] = wire

    def glue(self, text: str) -> bytes:
        """``target`` for an NS target, often a name below the NS owner (which the cache holds)."""
        dot = text.find(".")
        parent = self.cache.get(text[dot + 1 :])
        if parent is None or dot > names.MAX_LABEL or not _plain(text):
            return self.target(text)
        wire = _LENGTH_PREFIXES[dot] + text[:dot].lower().encode() + parent
        if len(wire) > names.MAX_NAME:
            raise Irregular("long name")
        self.remember(text, wire)  # for the glue's own line
        return wire


def _plain(text: str) -> bool:
    """A name written without escapes, quotes or ``@``: ASCII in non-empty labels, each byte standing for itself.

    That is what ``resolve_name`` reads literally too (``names.from_text_plain``).
    """
    return (
        text.isascii()
        and "@" not in text
        and "\\" not in text
        and '"' not in text
        and text[:1] != "."
        and ".." not in text
    )


def _txt(strings: list[str]) -> bytes:
    """Plain TXT strings (no escapes, each under 256 bytes); others go to rdata.encode.

    A token holds quotes only at its ends (see ``tokenize``), so stripping them unquotes it.
    """
    if "\\" in "".join(strings):
        raise Irregular("escaped TXT")
    wire = b""
    for text in strings:
        data = text.strip('"').encode()
        try:
            wire += _LENGTH_BYTES[len(data)] + data
        except IndexError:
            raise Irregular("long TXT string") from None
    if len(wire) > rdata.MAX_TXT_RDATA:
        raise Irregular("long TXT")
    return wire


def _u16(text: str, cache: dict[str, bytes]) -> bytes:
    """A 16-bit field (MX preference, SRV numbers), remembered in ``cache``: the same few values recur."""
    if not text.isdigit() or not text.isascii():
        raise Irregular("number")
    value = int(text)
    if value > 0xFFFF:
        raise Irregular("number")
    got = cache[text] = value.to_bytes(2, "big")
    return got


class ZonePiece:
    """What one pass over a file (or a piece of it) gathers."""

    def __init__(self, apex: bytes) -> None:
        self.apex = apex
        self.nodes: dict[bytes, model.Node] = {}
        self.multi: dict[tuple[bytes, int], list[bytes]] = {}
        # (type, owner, rdata) of each NS, CNAME, PTR, MX and SRV record: what the
        # whole-zone rules follow; and, apart, its line, for a message about the
        # record (an array: a tuple slot and an int object each would cost 5 times more).
        self.targets: list[tuple[int, bytes, bytes]] = []
        self.target_lines = array.array("q")
        self.soa: Record | None = None
        # The TTL warnings, written after the SOA's: clamps (never made errors), and
        # ACME overrides and disagreeing TTLs in an RRset.
        self.clamped: list[Remark] = []
        self.ttl_warnings: list[Remark] = []
        # Owners that are not children of the apex (the apex included): the
        # only ones that can be below a cut or have a missing parent.
        self.deep: list[bytes] = []
        # (owner, type, line) of each record at an owner outside the zone (glue, as
        # gdnsd allows it), or at an owner ``parse_piece`` was asked to watch.
        self.noted: list[tuple[bytes, int, int]] = []
        # The files $INCLUDEd, in the order read: every "line" above is a position
        # (see POSITION_FILE), the SOA's too.
        self.files: list[str] = []
        self.soa_position = 0
        # Every DYNA and DYNC record, in reading order (a name's first is in ``nodes``;
        # the rules refuse a second): the rules check each with the plugins.
        self.dynamic: list[Record] = []
        # The RRsets whose TTLs disagree, already warned about (once per RRset).
        self.disagreed: set[tuple[bytes, int]] = set()

    def where(self, path: str, position: int) -> tuple[str, int]:
        """The file (``path`` for the zone's own) and line of a position."""
        index = position // POSITION_FILE
        return (path if not index else self.files[index - 1]), position % POSITION_FILE


@dataclass(frozen=True, slots=True)
class Start:
    """Where a piece of a file starts: its first line's number and the $ORIGIN/$TTL in force.

    ``file_origin`` is what ``@F`` stands for: the origin the file started
    with (``None``: the apex, as for the zone's own file).
    """

    line: int
    origin: bytes
    default_ttl: int
    file_origin: bytes | None = None



def tokenize(text: str) -> list[str]:
    """Split one line into tokens (quotes kept, comment dropped); ``ValueError`` for an open quote or a stray backslash."""
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


class _Unfinished(Exception):
    """The line holds a parenthesis, an unclosed quote or a carriage return: ``_Layout`` reads it, with the lines it takes."""


def _special_tokens(line: str) -> list[str]:
    """The tokens of a line holding quotes, parentheses, a comment or escapes; ``_Unfinished`` for what ``_Layout`` reads."""
    if "\r" in line:
        raise _Unfinished
    if _UNQUOTED_SPECIAL_RE.search(line) is None:
        return _quoted_tokens(line)
    try:
        tokens = tokenize(line)
    except ValueError:
        raise _Unfinished from None
    if "(" in tokens or ")" in tokens:
        raise _Unfinished
    return tokens


def _quoted_tokens(line: str) -> list[str]:
    """``tokenize`` for a line whose only special characters are quotes, as in most TXT lines, without its loop.

    An odd quote is left open, for the next line to close (``_Unfinished``).
    In the commonest shape, an owner (or a blank), maybe a TTL and class,
    ``TXT`` and quoted strings, the strings come without their quotes,
    cheaper to cut out: ``_txt`` reads them alike.
    """
    parts = line.split('"')
    if not len(parts) & 1:
        raise _Unfinished
    head = parts[0].split()
    if (
        len(head) >= (1 if line[0] in " \t" else 2)
        and head[-1] in _TXT_NAMES
        and not "".join(parts[2::2]).strip()
    ):
        head += parts[1::2]
        return head
    return _QUOTED_RE.findall(line)


_BLOCK = 1 << 16  # characters read at a time from a file
_BATCH = 2048  # lines taken at a time from a list


def _batches(lines: Iterable[str], number: int) -> Iterator[tuple[int, list[str], bool]]:
    """``lines`` in batches: (first line's number, lines, clean).

    ``lines`` may also be an open file, or the text itself (a ``str``),
    read in blocks: cheaper than taking lines one by one. A clean batch is
    ASCII without ``();\\`` or a carriage return, which the loop then need
    not look for line by line (a C scan of the batch costs far less than a
    regex search of each line). A record over several lines (in parentheses,
    or with a quoted string that holds a newline) is read by ``_Layout``,
    which takes the lines it needs from the batches that follow.
    """
    if isinstance(lines, io.TextIOBase | str):
        for block in _blocks(lines):
            for part, clean in _clean_tail(block):
                batch = part.split("\n")
                if part[-1] == "\n":
                    batch.pop()  # what follows the last newline: nothing
                yield number, batch, clean
                number += len(batch)
    else:
        source = iter(lines)
        while batch := list(itertools.islice(source, _BATCH)):
            yield number, batch, _clean("".join(batch))
            number += len(batch)


# A token of a line, for ``_Layout``: a quoted string, one left open at the end of the
# line, a parenthesis, a comment, a run of other characters (a backslash escapes the
# next one), or a stray backslash at the end.
_LAYOUT_TOKEN_RE = re.compile(
    r'(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<open>"(?:[^"\\]|\\.)*\\?$)|[()]|;.*|(?:[^\s"();\\]|\\.)+|\\'
)
# The end of a quoted string that a previous line left open.
_CLOSING_RE = re.compile(r'(?:[^"\\]|\\.)*"')
_NEWLINE = "\n"


class LayoutError(ValueError):
    """A record's layout the reference refuses, at ``line`` (counted from the record's first line, 0)."""

    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.line = line


class _Layout:
    """The tokens of a record written over several lines, as the reference reads them.

    Parentheses let a record go on over the next lines (a comment still ends
    at the end of its line); a quoted string may hold a newline, which is
    part of the string. ``feed`` takes a line at a time and says whether the
    record is complete; ``line`` is its tokens (parentheses and comments
    dropped) on one line, which reads back as the same tokens.
    """

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.depth = 0
        self.open: list[str] | None = None  # the parts so far of a quoted string that goes on
        self.opened_at = 0  # the line it started on
        self.fed = 0

    def feed(self, text: str) -> bool:
        """The record's next line (without its newline); whether the record is complete."""
        fed = self.fed
        self.fed += 1
        if "\r" in text:
            raise LayoutError("carriage return in zone file (DOS line endings are not accepted)", fed)
        pos = 0
        if self.open is not None:
            closing = _CLOSING_RE.match(text)
            if closing is None:
                self.open.append(text)
                return False
            pos = closing.end()
            self.open.append(text[:pos])
            self.tokens.append(_NEWLINE.join(self.open))
            self.open = None
        for match in _LAYOUT_TOKEN_RE.finditer(text, pos):
            token = match.group()
            first = token[0]
            if first == ";":
                break
            if first == "(":
                self.depth += 1
                if self.depth > 1:
                    raise LayoutError("nested parentheses", fed)
            elif first == ")":
                if not self.depth:
                    raise LayoutError("')' without a matching '('", fed)
                self.depth -= 1
            elif match.lastgroup == "open":
                self.open = [token]
                self.opened_at = fed
            elif token == "\\":
                raise LayoutError("stray backslash at the end of a line", fed)
            else:
                self.tokens.append(token)
        return not self.depth and self.open is None

    def unclosed(self) -> LayoutError:
        """What is left open when the lines end before the record."""
        if self.open is not None:
            return LayoutError("unterminated quoted string (no closing quote before end of file)", self.opened_at)
        return LayoutError("'(' without a matching ')' before end of file", 0)

    def line(self, first: str) -> str:
        """The record on one line, after ``first``'s leading blank (a blank owner stays one)."""
        return first[: len(first) - len(first.lstrip(" \t"))] + " ".join(self.tokens)


def _joined(batch: list[str], index: int, more: Iterator[tuple[int, list[str], bool]]) -> str:
    """The record starting at ``batch[index]``, on one line; the other lines it takes are left empty in ``batch``.

    When the batch ends before the record, the next batches' lines are added
    to it (so every line keeps its number). Raises ``LayoutError``, or
    ``Irregular`` when the lines end before the record does (see ``parse_piece``:
    a piece of a file ends there, which the file may not).
    """
    layout = _Layout()
    at = index
    while True:
        if at == len(batch):
            following = next(more, None)
            if following is None:
                break
            batch += following[1]
        text = batch[at]
        if text[-1:] == _NEWLINE:
            text = text[:-1]
        if at > index:
            batch[at] = ""
        at += 1
        if layout.feed(text):
            return layout.line(batch[index])
    raise _EndedInside(layout.unclosed())


class _EndedInside(Irregular):
    """The lines ended inside a record: at the end of a file, ``error``; of a piece, a cut in the wrong place."""

    def __init__(self, error: LayoutError) -> None:
        super().__init__("lines ended inside a record")
        self.error = error


def open_at_end(lines: list[str]) -> bool:
    """Whether ``lines`` end inside a record (a parenthesis or a quoted string left open), or may."""
    layout = _Layout()
    try:
        for text in lines:
            if layout.feed(text):
                layout = _Layout()
    except LayoutError:
        return True
    return layout.fed > 0


def _blocks(source: io.TextIOBase | str) -> Iterator[str]:
    """About ``_BLOCK`` characters at a time, in whole lines."""
    if isinstance(source, str):
        size = len(source)
        begin = 0
        while begin < size:
            end = source.find("\n", begin + _BLOCK) + 1 or size
            yield source[begin:end]
            begin = end
        return
    while block := source.read(_BLOCK):
        if block[-1] != "\n":
            block += source.readline()
        yield block


_SPECIAL_CHARACTERS = ("\\", ";", "(", ")", "\r")


def _clean_tail(block: str) -> tuple[tuple[str, bool], ...]:
    """``block`` and whether it is clean; or, when only its first lines are not, those lines then the clean rest.

    The commonest unclean block is a small zone's whole text: an SOA in
    parentheses with comments at the top, and plain lines after it. Read
    as a whole, each of its lines would be searched for special characters.
    """
    if _clean(block):
        return ((block, True),)
    last = max(map(block.rfind, _SPECIAL_CHARACTERS))
    cut = block.find("\n", last) + 1 if last >= 0 else 0
    if 0 < cut < len(block) and block[cut:].isascii():
        return (block[:cut], False), (block[cut:], True)
    return ((block, False),)


def _clean(text: str) -> bool:
    return (
        text.isascii()
        and "\\" not in text
        and ";" not in text
        and "(" not in text
        and ")" not in text
        and "\r" not in text
    )


def _label_prefixes(origin: bytes) -> tuple[bytes, ...]:
    """The length byte of each label that may stand before ``origin``: past the end is a label too long."""
    return _LENGTH_PREFIXES[: min(names.MAX_LABEL, names.MAX_NAME - len(origin) - 1) + 1]


def parse_piece(
    lines: Iterable[str],
    path: str,
    apex: bytes,
    settings: ZoneSettings,
    start: Start | None = None,
    watch: frozenset[bytes] = frozenset(),
    lenient: bool = False,
    ends_file: bool = True,
) -> ZonePiece:
    """The lines of one file, or of one piece of it (see ``split``), read into per-name nodes.

    ``lines`` may be an open file, the text (a ``str``), or lines that may
    keep their newline (``split()`` ignores it). This loop is most of the
    time a big zone takes to load: it avoids calls and temporaries for the
    common lines (a plain owner, a known type, one-token rdata). The lines
    of the records at the owners in ``watch`` are noted (``ZonePiece.noted``).
    ``lenient`` lets the rules it checks as it reads pass (``Broken`` is not
    raised): a second reading, for the lines an error message names.
    ``ends_file``: the lines end where the file does (else a record they
    leave open is ``Irregular``: a piece cut in the wrong place, not an error).

    The first problem in the file, in file order, raises ``RefusedRecord``
    (``file:line``); the files ``$INCLUDE``d are read where they are
    included, into the same piece.
    """
    if start is None:
        start = Start(1, apex, settings.default_ttl)
    out = ZonePiece(apex)
    _read(out, lines, path, settings, start, watch, 0, lenient, ends_file, 0)
    _fold(out.nodes, out.multi)
    return out


def _read(
    out: ZonePiece,
    lines: Iterable[str],
    path: str,
    settings: ZoneSettings,
    start: Start,
    watch: frozenset[bytes],
    depth: int,
    lenient: bool,
    ends_file: bool,
    file_index: int,
) -> None:
    """``parse_piece``'s loop, into ``out``: ``path``'s lines, that file being ``out.files[file_index - 1]`` (0: the zone's own).

    Each record's position is its line plus ``file_index * POSITION_FILE``
    (see ``POSITION_FILE``); ``depth`` counts the ``$INCLUDE``s it is read under.
    """
    apex = out.apex
    shift = file_index * POSITION_FILE
    nodes = out.nodes
    multi = out.multi
    targets = out.targets
    target_line = out.target_lines.append
    namer = RelativeNames(apex)
    namer.set_origin(start.origin)
    wire_of = namer.wire
    target_of = namer.target
    glue_of = namer.glue
    target_cache = namer.cache
    special = _SPECIAL_RE.search
    quoted = _quoted_tokens
    default_ttl = start.default_ttl
    min_ttl = settings.min_ttl
    max_ttl = settings.max_ttl
    default_clamped = not min_ttl <= default_ttl <= max_ttl
    ttls: dict[str, int] = {}
    acme_ttl = settings.acme_challenge_dns_ttl
    disagreed = out.disagreed
    u16s: dict[str, bytes] = {}
    rtypes = _LOWER_TYPES
    context = rdata.RdataContext(target_of, settings.text_autosplit)
    origin = start.origin
    origin_deep = origin != apex
    watching = bool(watch)
    child_length = len(apex) + 1  # the length of a child of the apex, less its first label
    # A blank owner before any owner is written is the zone's name (gdnsd 3.8.1, in every
    # file, an $INCLUDEd one too): ``$TTL 86400`` then an indented ``SOA ...`` is common.
    owner = apex
    owner_text = ""  # the owner as written: "" for none (no token is empty)
    owner_deep = len(apex) != apex[0] + child_length
    noted = watching and apex in watch  # whether the owner's records go to out.noted
    one_by_one: _OneRecord | None = None
    deep = out.deep
    prefixes = _label_prefixes(origin)
    new = _NEW
    rrset_class = model.RRset
    set_rtype = _SET_RTYPE
    set_ttl = _SET_TTL
    set_rdatas = _SET_RDATAS
    claim = nodes.setdefault
    inet_pton = _inet_pton
    one_target = _ONE_TARGET
    batches = _batches(lines, start.line)
    for first_number, batch, clean in batches:
        base = first_number + shift
        for number, line in enumerate(batch, base):
            try:
                try:
                    if clean:
                        tokens = line.split() if '"' not in line else quoted(line)
                    elif special(line) is None:
                        tokens = line.split()
                    else:
                        tokens = _special_tokens(line)
                except _Unfinished:
                    # Parentheses, a quoted string going on to the next line, or what the
                    # reference refuses in a layout: read with the lines it takes.
                    clean = False  # lines of later batches may join this one
                    try:
                        line = batch[number - base] = _joined(batch, number - base, batches)
                    except LayoutError as exc:
                        raise RefusedRecord(str(exc), path, number - shift + exc.line) from None
                    except _EndedInside as ended:
                        if not ends_file:
                            raise
                        error = ended.error
                        raise RefusedRecord(str(error), path, number - shift + error.line) from None
                    tokens = _special_tokens(line)
                if not tokens:
                    continue
                if line[0] in " \t":
                    pos = 0
                else:
                    first = tokens[0]
                    if first != owner_text:
                        # A clean batch is ASCII without backslashes or quotes outside quoted tokens.
                        if (clean and first.isalnum()) or (
                            line[0] != "$"
                            and "." not in first
                            and "@" not in first
                            and first.isascii()
                            and "\\" not in first
                            and '"' not in first
                        ):
                            try:
                                owner = prefixes[len(first)] + first.encode().lower() + origin
                            except IndexError:
                                raise Irregular("long owner") from None
                            owner_deep = origin_deep
                            noted = watching and owner in watch
                        elif line[0] == "$":
                            try:
                                word = tokens[0].upper()
                                if word == "$INCLUDE":
                                    _include(
                                        out, tokens, path, namer, start.file_origin, default_ttl, settings, watch,
                                        depth, lenient,
                                    )
                                    continue
                                directive(tokens, namer, start.file_origin)
                            except (ValueError, names.NameError_) as exc:
                                raise RefusedRecord(str(exc), path, number - shift) from None
                            if word == "$TTL":
                                default_ttl = parse_ttl(tokens[1])
                                default_clamped = not min_ttl <= default_ttl <= max_ttl
                            else:
                                # The owner stays (gdnsd 3.8.1): a blank owner after $ORIGIN is the last one written.
                                owner_text = ""
                                origin = namer.origin
                                origin_deep = origin != apex
                                prefixes = _label_prefixes(origin)
                                target_cache = namer.cache
                            continue
                        else:
                            # Glue and other targets are owners too: the target cache may know them.
                            owner = target_cache.get(first) or wire_of(first)
                            if first[-1] == "." and not within(owner, apex):
                                noted = True  # glue outside the zone: not deep, its walk up would leave the zone
                                owner_deep = False
                            else:
                                noted = watching and owner in watch
                                owner_deep = len(owner) != owner[0] + child_length
                        owner_text = first
                    pos = 1
                count = len(tokens)
                try:
                    rtype = rtypes.get(tokens[pos])
                except IndexError:
                    raise Irregular("no type") from None
                if rtype is None:
                    # A TTL and/or the class first. The commonest shapes without a call: the
                    # class alone, or a TTL seen before then the class, or that TTL alone.
                    head = tokens[pos]
                    written = ttls.get(head)
                    if head == "IN" and pos + 1 < count and (rtype := rtypes.get(tokens[pos + 1])) is not None:
                        pos += 1
                        ttl = default_ttl
                    elif written is not None and pos + 2 < count and tokens[pos + 1] == "IN" and (
                        (rtype := rtypes.get(tokens[pos + 2])) is not None
                    ):
                        pos += 2
                        ttl = written
                    elif written is not None and pos + 1 < count and (rtype := rtypes.get(tokens[pos + 1])) is not None:
                        pos += 1
                        ttl = written
                    else:
                        # Either order, any case (as _OneRecord.record).
                        ttl, pos = _ttl_and_class(tokens, pos, default_ttl, ttls)
                        if pos >= count:
                            raise Irregular("no type")
                        rtype = rtypes.get(tokens[pos]) or _generic_type(tokens[pos])
                    if (ttl < min_ttl or ttl > max_ttl) and rtype != _SOA:  # soa_rrset words the SOA's
                        ttl = _clamped(ttl, owner, rtype, number, settings, out.clamped)
                elif default_clamped and rtype != _SOA:
                    ttl = _clamped(default_ttl, owner, rtype, number, settings, out.clamped)
                else:
                    ttl = default_ttl
                pos += 1
                fields = count - pos
                if noted:
                    _note(out, owner, rtype, number)
                try:
                    if rtype == _A:
                        if fields != 1:
                            raise Irregular("A")
                        wire = inet_pton(_AF_INET, tokens[pos])
                    elif rtype == _AAAA:
                        if fields != 1:
                            raise Irregular("AAAA")
                        wire = inet_pton(_AF_INET6, tokens[pos])
                    elif rtype in one_target:
                        if fields != 1:
                            raise Irregular("target")
                        if rtype != _NS:
                            wire = target_cache.get(tokens[pos]) or target_of(tokens[pos])
                        else:
                            # Its glue's names end with it (namer.remember, inlined).
                            if len(target_cache) >= _TARGETS_CACHED:
                                target_cache.clear()
                            target_cache[owner_text] = owner
                            wire = target_cache.get(tokens[pos]) or glue_of(tokens[pos])
                        targets.append((rtype, owner, wire))
                        target_line(number)
                    elif rtype == _MX:
                        if fields != 2:
                            raise Irregular("MX")
                        wire = (u16s.get(tokens[pos]) or _u16(tokens[pos], u16s)) + (
                            target_cache.get(tokens[pos + 1]) or target_of(tokens[pos + 1])
                        )
                        targets.append((rtype, owner, wire))
                        target_line(number)
                    elif rtype == _SRV:
                        if fields != 4:
                            raise Irregular("SRV")
                        wire = (
                            (u16s.get(tokens[pos]) or _u16(tokens[pos], u16s))
                            + (u16s.get(tokens[pos + 1]) or _u16(tokens[pos + 1], u16s))
                            + (u16s.get(tokens[pos + 2]) or _u16(tokens[pos + 2], u16s))
                            + (target_cache.get(tokens[pos + 3]) or target_of(tokens[pos + 3]))
                        )
                        targets.append((rtype, owner, wire))
                        target_line(number)
                    elif rtype == _TXT:
                        if not fields:
                            raise Irregular("TXT")
                        wire = _txt(tokens[pos:])
                        if owner.startswith(_ACME):
                            # Served with the acme setting's TTL, whatever the file says.
                            if ttl != acme_ttl:
                                out.ttl_warnings.append((owner, rtype, number, acme_overridden(owner, ttl, acme_ttl)))
                            ttl = acme_ttl
                    else:
                        if rtype == _SOA and (owner != apex or out.soa is not None):
                            raise Irregular("SOA")
                        wire = rdata.encode(rtype, tokens[pos - 1].upper(), tokens[pos:], context)
                        if rtype == _SOA:
                            out.soa = Record(owner, rtype, ttl, wire, path, number - shift)
                            out.soa_position = number
                except (OSError, ValueError, names.NameError_):
                    raise Irregular("rdata") from None
            except (RefusedRecord, Broken, _EndedInside):
                raise  # the file's first problem; or a piece's end in the wrong place
            except Irregular:
                assert line[:1] != "$", "directives are read here or refused (RefusedRecord)"
                # A record this loop does not read (escapes, a long TXT string, a type or
                # layout it leaves aside): read more slowly, that record alone.
                _forget_line(out, number)
                if one_by_one is None:
                    one_by_one = _OneRecord(apex, path, settings, start.file_origin or apex, lenient)
                record, written_owner = one_by_one.read(line, number - shift, namer.origin, default_ttl, owner)
                owner = record.owner
                rtype = record.rtype
                wire = record.rdata
                if written_owner is not None:
                    owner_text = written_owner
                    outside = not within(owner, apex)
                    noted = outside or (watching and owner in watch)
                    owner_deep = not outside and len(owner) != owner[0] + child_length
                if rtype in (_DYNA, _DYNC):
                    _add(out, one_by_one.dynamic(out, record, noted, number), owner, owner_deep, number, disagreed, lenient)
                    continue
                ttl = one_by_one.settle(out, record, noted, number)
            # new_rrset and _add, inlined: this runs once per record.
            rrset = new(rrset_class)
            set_rtype(rrset, rtype)
            set_ttl(rrset, ttl)
            set_rdatas(rrset, (wire,))
            node = claim(owner, rrset)  # a name's only RRset is its node (model.node_of)
            if node is rrset:
                if owner_deep:
                    deep.append(owner)
                continue
            have = node.get(rtype)
            if have is None:
                if (rtype == _CNAME or _CNAME in node) and not lenient:
                    raise Broken(CNAME_BESIDE_DATA, owner)
                nodes[owner] = with_rrset(node, rrset)
            else:
                if have.ttl != ttl and (owner, rtype) not in disagreed:
                    # The first record's TTL serves; the reference words it once per RRset.
                    disagreed.add((owner, rtype))
                    out.ttl_warnings.append((owner, rtype, number, ttls_disagree(owner, rtype, have.ttl)))
                more = multi.get((owner, rtype))
                if more is None:
                    multi[(owner, rtype)] = [wire]
                else:
                    more.append(wire)


def _fold(nodes: dict[bytes, model.Node], multi: dict[tuple[bytes, int], list[bytes]]) -> None:
    """The RRsets' later records (kept apart while reading) into their RRsets, in order."""
    for (name, rtype), more in multi.items():
        node = nodes[name]
        have = node[rtype]
        nodes[name] = with_rrset(node, new_rrset(rtype, have.ttl, have.rdatas + tuple(more)))
    multi.clear()


def _include(
    out: ZonePiece,
    tokens: list[str],
    path: str,
    namer: RelativeNames,
    file_origin: bytes | None,
    default_ttl: int,
    settings: ZoneSettings,
    watch: frozenset[bytes],
    depth: int,
    lenient: bool,
) -> None:
    """The file an ``$INCLUDE`` line names, read into ``out`` there, as if its lines stood in its place.

    Its path is relative to the including file's directory; it starts with
    the origin given (relative to the current one) or the current one, the
    current $TTL, and the zone's name as its owner; what it changes of them
    stays inside it. Its problems raise ``RefusedRecord`` at their line in
    it; what stops it being read at all raises ``ValueError`` (worded, for
    the ``$INCLUDE`` line).
    """
    if len(tokens) not in (2, 3):
        raise ValueError("$INCLUDE takes a file name and an optional origin")
    if depth >= MAX_INCLUDE_DEPTH:
        raise ValueError(f"$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)")
    target = tokens[1].strip('"')
    included = os.path.join(os.path.dirname(path), target)
    origin = namer.origin if len(tokens) == 2 else _in_zone_name(tokens[2], namer, "origin", file_origin)
    try:
        handle = open_zone_text(included)
    except ZoneError as exc:
        raise ValueError(f"$INCLUDE {target}: {exc.problem}") from None
    out.files.append(included)
    with handle:
        start = Start(1, origin, default_ttl, origin)
        _read(out, handle, included, settings, start, watch, depth + 1, lenient, True, len(out.files))


def merge(into: ZonePiece, piece: ZonePiece) -> None:
    """Add a later piece of the same file to ``into``, as if read in one pass (``Irregular`` if it cannot be).

    A piece holds no ``$INCLUDE``d file (see ``parallel._portable_piece``).
    """
    nodes = into.nodes
    later = piece.nodes
    for name in nodes.keys() & later.keys():
        node = nodes[name]
        for rtype, rrset in later.pop(name).items():
            have = node.get(rtype)
            if have is None:
                if rtype == _CNAME or _CNAME in node:
                    raise Broken(CNAME_BESIDE_DATA, name)
                node = with_rrset(node, rrset)
            elif rtype in (_DYNA, _DYNC):
                pass  # a second one at the name: the rules refuse it (both are in ``dynamic``)
            elif have.ttl != rrset.ttl:
                raise Irregular("TTLs disagree")
            else:
                node = with_rrset(node, new_rrset(rtype, have.ttl, have.rdatas + rrset.rdatas))
                if rtype == _NS and len(have.rdatas) + len(rrset.rdatas) > MAX_NS_RRSET:
                    raise Broken(TOO_MANY_NS, name)  # each piece checked its own part only
        nodes[name] = node
    nodes.update(later)
    if piece.ttl_warnings and into.ttl_warnings:
        # An RRset whose TTLs disagree in both: the reference words it once, at the first.
        # (An ACME TXT's TTLs never disagree: each of its records has its own warning.)
        worded = {(owner, rtype) for owner, rtype, _, _ in into.ttl_warnings}
        piece.ttl_warnings = [
            remark
            for remark in piece.ttl_warnings
            if (remark[0], remark[1]) not in worded or (remark[1] == _TXT and remark[0].startswith(_ACME))
        ]
    into.targets += piece.targets
    into.target_lines += piece.target_lines
    into.noted += piece.noted
    into.clamped += piece.clamped
    into.ttl_warnings += piece.ttl_warnings
    into.deep += piece.deep
    into.dynamic += piece.dynamic
    if piece.soa is not None:
        if into.soa is not None:
            raise Broken(SECOND_SOA, into.apex, at=(piece.soa.path, piece.soa.line))
        into.soa = piece.soa
        into.soa_position = piece.soa_position


def with_rrset(node: model.Node, rrset: model.RRset) -> model.Node:
    """``node`` holding ``rrset`` too (in place of one of its type): a dict from the second type on."""
    if isinstance(node, dict):
        node[rrset.rtype] = rrset
        return node
    if node.rtype == rrset.rtype:
        return rrset
    return {node.rtype: node, rrset.rtype: rrset}


def _forget_line(piece: ZonePiece, line: int) -> None:
    """Undo what the fast loop noted for ``line`` before it gave the line up."""
    while piece.target_lines and piece.target_lines[-1] == line:
        piece.targets.pop()
        piece.target_lines.pop()
    while piece.noted and piece.noted[-1][2] == line:
        piece.noted.pop()
    for remarks in (piece.clamped, piece.ttl_warnings):
        while remarks and remarks[-1][2] == line:
            remarks.pop()


class _OneRecord:
    """One record the loop does not read itself, read slowly: that record alone, never the zone.

    Escapes in names or strings, TXT strings to split, DYNA and DYNC, RFC
    3597 and the rarer types, unusual layouts. Its refusals are the zone's,
    worded for the operator (``RefusedRecord``, ``file:line``).
    """

    def __init__(self, apex: bytes, path: str, settings: ZoneSettings, file_origin: bytes, lenient: bool) -> None:
        self.apex = apex
        self.path = path
        self.file_origin = file_origin
        self.origin = apex
        self.context = rdata.RdataContext(self.name, settings.text_autosplit)
        self.settings = settings
        self.lenient = lenient

    def name(self, text: str) -> bytes:
        return resolve_name(text, self.origin, self.apex, self.file_origin)

    def read(self, line: str, number: int, origin: bytes, default_ttl: int, owner: bytes) -> tuple[Record, str | None]:
        """The line's record, and its owner's text (``None`` for a blank owner, which is ``owner``)."""
        self.origin = origin
        blank = line[0] in " \t"
        try:
            tokens = tokenize(line)
            record = self.record(tokens, blank, owner, default_ttl, number)
        except (ValueError, names.NameError_) as exc:
            raise RefusedRecord(str(exc), self.path, number) from None
        return record, None if blank else tokens[0]

    def record(self, tokens: list[str], blank: bool, owner: bytes, default_ttl: int, number: int) -> Record:
        """The record ``tokens`` say, at line ``number``: TTL and class in either order, the only class ``IN``."""
        apex = self.apex
        pos = 0
        if not blank:
            owner = self.name(tokens[0])
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
            if rtype in (_DYNA, _DYNC):
                dyn = _DYN_TTL_RE.fullmatch(ttl_text)
                if dyn is None:
                    raise ValueError(f"invalid DYNA/DYNC TTL {ttl_text!r} (MAX or MAX/MIN)")
                ttl = parse_ttl(dyn.group(1))
                if dyn.group(2) is not None:
                    dyn_min = parse_ttl(dyn.group(2))
            else:
                ttl = parse_ttl(ttl_text)
        if ttl is None:
            ttl = default_ttl
        if rtype == _SOA and owner != apex:
            raise ValueError("SOA record can only be defined for the root of the zone")
        # A relative owner is below the origin, which is inside the zone: no check needed.
        absolute = blank or tokens[0].endswith(".") or "@" in tokens[0]
        if absolute and not within(owner, apex) and rtype not in (_A, _AAAA):
            raise ValueError(
                f"name '{names.to_text(owner)}' is not within this zonefile's zone ({names.to_text(apex)})"
            )
        wire = rdata.encode(rtype, type_text, tokens[pos + 1 :], self.context)
        return Record(owner, rtype, ttl, wire, self.path, number, dyn_min)

    def dynamic(self, piece: ZonePiece, record: Record, noted: bool, position: int | None = None) -> model.DynamicRRset:
        """A DYNA or DYNC record's RRset, its TTLs' warnings noted as the loop notes others'.

        ``position``: the record's in ``piece`` (see ``POSITION_FILE``), if not its line.
        """
        owner, rtype = record.owner, record.rtype
        line = record.line if position is None else position
        rrset, clamp, below = dynamic_rrset_and_warnings(owner, record, self.settings)
        if clamp is not None:
            piece.clamped.append((owner, rtype, line, clamp))
        if below is not None:
            piece.ttl_warnings.append((owner, rtype, line, below))
        piece.dynamic.append(record)
        if noted:
            _note(piece, owner, rtype, line)
        return rrset

    def settle(self, piece: ZonePiece, record: Record, noted: bool, position: int | None = None) -> int:
        """What the fast loop does for a record it reads, done for ``record``; the TTL it is served with.

        ``position`` as for ``dynamic``.
        """
        owner, rtype, ttl = record.owner, record.rtype, record.ttl
        line = record.line if position is None else position
        settings = self.settings
        if rtype == _SOA and piece.soa is not None:
            if not self.lenient:
                raise Broken(SECOND_SOA, piece.apex, at=(record.path, record.line))
        elif rtype == _SOA:
            piece.soa = record  # soa_rrset clamps its TTL, and words it
            piece.soa_position = line
        elif not settings.min_ttl <= ttl <= settings.max_ttl:
            ttl = _clamped(ttl, owner, rtype, line, settings, piece.clamped)
        if rtype == _TXT and owner.startswith(_ACME):
            if ttl != settings.acme_challenge_dns_ttl:
                piece.ttl_warnings.append((owner, rtype, line, acme_overridden(owner, ttl, settings.acme_challenge_dns_ttl)))
            ttl = settings.acme_challenge_dns_ttl
        if rtype in _POINTING:
            piece.targets.append((rtype, owner, record.rdata))
            piece.target_lines.append(line)
        if noted:
            _note(piece, owner, rtype, line)
        return ttl


def _add(
    piece: ZonePiece,
    rrset: model.RRset,
    owner: bytes,
    deep: bool,
    position: int,
    disagreed: set[tuple[bytes, int]],
    lenient: bool,
) -> None:
    """One record's ``rrset`` into the piece's nodes at ``owner`` (``parse_piece``'s loop inlines it).

    A later record of an RRset waits in ``piece.multi`` (see ``_fold``); a
    second DYNA or DYNC at a name is left out (``piece.dynamic`` holds it,
    for the rules to refuse).
    """
    nodes = piece.nodes
    node = nodes.setdefault(owner, rrset)
    if node is rrset:
        if deep:
            piece.deep.append(owner)
        return
    rtype = rrset.rtype
    have = node.get(rtype)
    if have is None:
        if (rtype == _CNAME or _CNAME in node) and not lenient:
            raise Broken(CNAME_BESIDE_DATA, owner)
        nodes[owner] = with_rrset(node, rrset)
    elif rtype != _DYNA and rtype != _DYNC:
        if have.ttl != rrset.ttl and (owner, rtype) not in disagreed:
            # The first record's TTL serves; gdnsd words it once per RRset.
            disagreed.add((owner, rtype))
            piece.ttl_warnings.append((owner, rtype, position, ttls_disagree(owner, rtype, have.ttl)))
        piece.multi.setdefault((owner, rtype), []).append(rrset.rdatas[0])


def _note(piece: ZonePiece, owner: bytes, rtype: int, line: int) -> None:
    """A record at an owner outside the zone (A and AAAA only, as the reference reads), or a watched one."""
    if rtype != _A and rtype != _AAAA and not within(owner, piece.apex):
        raise Irregular("data outside the zone")
    piece.noted.append((owner, rtype, line))


def _clamped(ttl: int, owner: bytes, rtype: int, line: int, settings: ZoneSettings, into: list[Remark]) -> int:
    """``ttl`` clamped into the settings' range, the warning into ``into``."""
    ttl, message = clamp_ttl(ttl, owner, "TTL", settings)
    if message is not None:
        into.append((owner, rtype, line, message))
    return ttl


def _generic_type(text: str) -> int:
    """RFC 3597 ``TYPEnnn`` (rdata.encode then checks what it may stand for)."""
    if text[:4].upper() != "TYPE":
        raise Irregular(f"type {text}")
    try:
        return rdata.type_code(text.upper())
    except ValueError:
        raise Irregular(f"type {text}") from None


def _ttl_and_class(tokens: list[str], pos: int, ttl: int, cache: dict[str, int]) -> tuple[int, int]:
    """The TTL (or ``ttl`` when none is written) and the position past the TTL and class fields."""
    seen_ttl = False
    seen_class = False
    for _ in range(2):
        if pos >= len(tokens):
            break
        tok = tokens[pos]
        if not seen_ttl and tok[0].isdigit():
            got = cache.get(tok)
            if got is None:
                try:
                    got = cache[tok] = parse_ttl(tok)
                except ValueError:
                    raise Irregular("ttl") from None
            ttl = got
            seen_ttl = True
            pos += 1
        elif not seen_class and tok.upper() == "IN":
            seen_class = True
            pos += 1
        else:
            break
    return ttl, pos


def directive(tokens: list[str], namer: RelativeNames, file_origin: bytes | None = None) -> None:
    """$ORIGIN (applied to ``namer``) and $TTL (checked: the caller applies it); anything else is refused.

    Refusals raise ``ValueError``, worded for the operator. ``file_origin``
    is what ``@F`` stands for (by default, the zone's name).
    """
    name = tokens[0].upper()
    if name == "$TTL":
        if len(tokens) != 2:
            raise ValueError("$TTL takes exactly one TTL value")
        parse_ttl(tokens[1])
    elif name == "$ORIGIN":
        if len(tokens) != 2:
            raise ValueError("$ORIGIN takes exactly one name")
        namer.set_origin(_in_zone_name(tokens[1], namer, "origin", file_origin))
    else:
        raise ValueError(f"unsupported directive {tokens[0]} (gdnsd knows $TTL, $ORIGIN, $INCLUDE)")


def _in_zone_name(text: str, namer: RelativeNames, what: str, file_origin: bytes | None = None) -> bytes:
    """The name ``text`` stands for (relative to ``namer``'s origin), refused unless within the zone."""
    try:
        name = namer.wire(text)
    except Irregular:  # escapes, quotes, ``@F``, long labels: the slower reading words what it refuses
        name = resolve_name(text, namer.origin, namer.apex, file_origin or namer.apex)
    if not within(name, namer.apex):
        raise ValueError(
            f"{what} '{names.to_text(name)}' is not within this zonefile's zone ({names.to_text(namer.apex)})"
        )
    return name


def resolve_name(text: str, origin: bytes, apex: bytes, file_origin: bytes) -> bytes:
    """A name as written in a zone file: quoted or not, escapes, ``@``, and ``@Z``/``@F`` (the zone's
    name / the file's starting origin), alone or as its last label; relative to ``origin``.

    Raises ``names.NameError_`` for what is not a name.
    """
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1]
    if text == "@Z":
        return apex
    if text == "@F":
        return file_origin
    if text.endswith(".@Z") and not text.endswith("\\.@Z"):
        return names.from_text(text[:-3], apex)
    if text.endswith(".@F") and not text.endswith("\\.@F"):
        return names.from_text(text[:-3], file_origin)
    plain = names.from_text_plain(text, origin)
    return plain if plain is not None else names.from_text(text, origin)
