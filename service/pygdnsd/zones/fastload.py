"""A zone file -> ``model.Zone`` quickly, for zones that need no message.

The reference path (``zonefile.parse_zone_file`` then ``tree.build_zone``)
makes a ``Record`` per line and runs each check over every record, keeping
file and line for every message it may have to write: about 35 s for a
1M-record zone. Nearly every big zone is clean, so this path reads the file
line by line into the final per-name nodes directly (names and TTLs cached,
no per-record objects, no line numbers) and only *detects* trouble: the
first line it does not understand, or anything that would make the
reference path warn or fail, raises ``Irregular``, and the caller loads that
zone with the reference path, which then says exactly what and where. So
every message comes from one place, and a zone loaded here equals what the
reference path builds (``tests/test_zone_fastload.py`` checks both).

The one exception is the SOA clamping warnings, which most zones trigger
(an SOA TTL above its MINIMUM): the SOA's line is kept and ``tree`` writes
them, after every check that could still send the zone to the reference
path, so nothing is logged twice.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import io
import itertools
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pygdnsd.zones import model, names, rdata
from pygdnsd.zones.rdata import parse_ttl
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.tree import (
    MAX_CNAME_CHAIN,
    MAX_NS_RRSET,
    Reporter,
    acme_overridden,
    clamp_ttl,
    cname_to_nxdomain,
    mname_not_ns,
    no_addresses,
    only_one_ns,
    same_zone_ptr,
    soa_rrset,
    ttls_disagree,
)
from pygdnsd.zones.zonefile import Record, tokenize

_A, _AAAA, _NS, _CNAME, _PTR, _MX, _SRV, _TXT, _SOA = (
    model.A, model.AAAA, model.NS, model.CNAME, model.PTR, model.MX, model.SRV, model.TXT, model.SOA,
)
# The types whose rdata this module encodes itself; others go through rdata.encode.
_TYPES = {
    "A": _A, "AAAA": _AAAA, "NS": _NS, "CNAME": _CNAME, "PTR": _PTR, "MX": _MX, "SRV": _SRV,
    "TXT": _TXT, "SOA": _SOA, "NAPTR": model.NAPTR, "CAA": model.CAA,
}
_LOWER_TYPES = {**_TYPES, **{k.lower(): v for k, v in _TYPES.items()}}
_ONE_TARGET = frozenset((_CNAME, _NS, _PTR))
_TXT_NAMES = frozenset(name for name, rtype in _LOWER_TYPES.items() if rtype == _TXT)
_LENGTH_BYTES = tuple(bytes((length,)) for length in range(256))
_LENGTH_PREFIXES = _LENGTH_BYTES[: names.MAX_LABEL + 1]
_ADDRESS = (_A, _AAAA)
_DIRECTIVE_RE = re.compile(r"^\$[^\n]*", re.MULTILINE)
_LABEL_RE = re.compile(r"[A-Za-z0-9_*-]+")
_SPECIAL_RE = re.compile(r'["();\\\r]')
_UNQUOTED_SPECIAL_RE = re.compile(r"[();\\]")
# ``zonefile.tokenize`` for a line whose only special characters are balanced quotes.
_QUOTED_RE = re.compile(r'"[^"]*"|[^\s"]+')
_ACME = b"\x0f_acme-challenge"
_WILDCARD = b"\x01*"
EMPTY_NODE: dict[int, model.RRset] = {}  # every empty non-terminal shares it: zones are never mutated
_TARGETS_CACHED = 100_000  # names, per origin: bounds the cache's memory
_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


_RRSET_SLOTS = vars(model.RRset)
_SET_RTYPE = _RRSET_SLOTS["rtype"].__set__
_SET_TTL = _RRSET_SLOTS["ttl"].__set__
_SET_RDATAS = _RRSET_SLOTS["rdatas"].__set__
_NEW = model.RRset.__new__


def new_rrset(rtype: int, ttl: int, rdatas: tuple[bytes, ...]) -> model.RRset:
    """``model.RRset(...)`` without the frozen dataclass's __init__: a third faster, same object."""
    rrset = _NEW(model.RRset)
    _SET_RTYPE(rrset, rtype)
    _SET_TTL(rrset, ttl)
    _SET_RDATAS(rrset, rdatas)
    return rrset


def new_rrsets(rtypes: list[int], ttls: list[int], rdatas: list[tuple[bytes, ...]]) -> list[model.RRset]:
    """``new_rrset`` over columns, with the loops in C: no Python frame per RRset (``forked``'s transfer)."""
    out = list(map(_NEW, itertools.repeat(model.RRset, len(rtypes))))
    for set_field, values in ((_SET_RTYPE, rtypes), (_SET_TTL, ttls), (_SET_RDATAS, rdatas)):
        collections.deque(map(set_field, out, values), maxlen=0)
    return out


class Irregular(Exception):
    """This zone needs the reference path (the message says why, for debugging)."""


def _within(name: bytes, apex: bytes) -> bool:
    if not name.endswith(apex):
        return False
    cut = len(name) - len(apex)
    pos = 0
    while pos < cut:
        pos += name[pos] + 1
    return pos == cut


class _Names:
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

    That is what the reference path reads literally too (``names.from_text_plain``).
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
        # (type, owner, rdata, line) of each NS, CNAME, PTR, MX and SRV record: what the
        # whole-zone rules follow, with the line a message about the record names.
        self.targets: list[tuple[int, bytes, bytes, int]] = []
        self.soa: Record | None = None
        # The TTL warnings, written after the SOA's: clamps (never made errors), and
        # ACME overrides and disagreeing TTLs in an RRset.
        self.clamped: list[Finding] = []
        self.ttl_warnings: list[Finding] = []
        # Owners that are not children of the apex (the apex included): the
        # only ones that can be below a cut or have a missing parent.
        self.deep: list[bytes] = []


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            text = handle.read()
    except OSError:
        raise Irregular("unreadable") from None
    if "\r" in text:
        raise Irregular("carriage return")
    return text


@dataclass(frozen=True, slots=True)
class Start:
    """Where a piece of a file starts: its first line's number and the $ORIGIN/$TTL in force."""

    line: int
    origin: bytes
    default_ttl: int


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
    namer = _Names(apex)
    default_ttl = settings.default_ttl
    pieces = []
    line = 1
    done = 0
    for begin, end in itertools.pairwise(cuts):
        for match in _DIRECTIVE_RE.finditer(text, done, begin):
            try:
                tokens = tokenize(match.group())
            except ValueError:
                raise Irregular("directive") from None
            _directive(tokens, namer)
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
    try:
        return bool(_join_parenthesized(text[text.rfind("\n", 0, opened) + 1 : pos].split("\n"))[1])
    except Irregular:
        return True


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


def _special_tokens(line: str) -> list[str]:
    """The tokens of a line holding quotes, parentheses, a comment or escapes; Irregular for what the fast path leaves."""
    if "\r" in line:
        raise Irregular("carriage return")
    if _UNQUOTED_SPECIAL_RE.search(line) is None:
        return _quoted_tokens(line)
    try:
        tokens = tokenize(line)
    except ValueError:
        raise Irregular("tokens") from None
    if "(" in tokens or ")" in tokens:
        raise Irregular("parentheses")
    return tokens


def _quoted_tokens(line: str) -> list[str]:
    """``tokenize`` for a line whose only special characters are quotes, as in most TXT lines, without its loop.

    An odd quote is unterminated: ``tokenize`` would fail. In the commonest
    shape, an owner (or a blank), ``TXT`` and quoted strings, the strings
    come without their quotes, cheaper to cut out: ``_txt`` reads them alike.
    """
    parts = line.split('"')
    if not len(parts) & 1:
        raise Irregular("tokens")
    head = parts[0].split()
    if (
        len(head) == (1 if line[0] in " \t" else 2)
        and head[-1] in _TXT_NAMES
        and not "".join(parts[2::2]).strip()
    ):
        head += parts[1::2]
        return head
    return _QUOTED_RE.findall(line)


_BLOCK = 1 << 16  # characters read at a time from a file
_BATCH = 2048  # lines taken at a time from a list


def _batches(lines: Iterable[str], number: int) -> Iterator[tuple[int, list[str], bool]]:
    """``lines`` in batches: (first line's number, lines, clean), parenthesized records on one line.

    ``lines`` may also be an open file, or the text itself (a ``str``),
    read in blocks: cheaper than taking lines one by one. A clean batch is
    ASCII without ``();\\`` or a carriage return, which the loop then need
    not look for line by line (a C scan of the batch costs far less than a
    regex search of each line). A record written over several lines in
    parentheses (see ``_join_parenthesized``) comes as one line, where it
    starts, and empty lines for the rest, so every line keeps its number.
    """
    carry: list[str] = []  # the start of a parenthesized record the last batch did not close
    if isinstance(lines, io.TextIOBase | str):
        for block in _blocks(lines):
            batch = block.split("\n")
            if carry or "(" in block:
                number -= len(carry)
                batch, carry = _join_parenthesized(carry + batch[:-1])
                batch.append("")  # the start of the next block's first line, as above
                yield number, batch, False
                number += len(batch) - 1 + len(carry)
                continue
            yield number, batch, _clean(block)
            number += len(batch) - 1  # the last is the start of the next block's first line
    else:
        source = iter(lines)
        while batch := list(itertools.islice(source, _BATCH)):
            text = "".join(batch)
            if carry or "(" in text:
                number -= len(carry)
                batch, carry = _join_parenthesized(carry + batch)
                yield number, batch, False
                number += len(batch) + len(carry)
                continue
            yield number, batch, _clean(text)
            number += len(batch)
    if carry:
        raise Irregular("'(' without ')'")


def _join_parenthesized(lines: list[str]) -> tuple[list[str], list[str]]:
    """``lines`` with each record written in parentheses over several lines on its first line, and what is left open.

    The record's tokens (its parentheses and comments dropped) are joined
    with spaces after the first line's leading blank, which reads back as
    the same tokens (quotes and escapes stay inside their tokens); the lines
    it took are left empty. Lines from an unclosed record's first on are
    returned apart, for the next batch to finish. What the reference path
    refuses (nested or unmatched parentheses, bad quoting) is Irregular.
    """
    out = lines
    count = len(lines)
    index = 0
    while index < count:
        line = lines[index]
        if "(" not in line and ")" not in line:
            index += 1
            continue
        if out is lines:
            out = list(lines)
        begin = index
        kept: list[str] = []
        depth = 0
        while True:
            for token in _tokens(lines[index]):
                if token == "(":
                    depth += 1
                    if depth > 1:
                        raise Irregular("nested parentheses")
                elif token == ")":
                    if not depth:
                        raise Irregular("')' without '('")
                    depth -= 1
                else:
                    kept.append(token)
            index += 1
            if not depth:
                break
            if index == count:
                return out[:begin], lines[begin:]
        blank = line[: len(line) - len(line.lstrip(" \t"))]
        out[begin] = blank + " ".join(kept)
        for taken in range(begin + 1, index):
            out[taken] = ""
    return out, []


def _tokens(line: str) -> list[str]:
    """``tokenize``, its refusals Irregular."""
    if "\r" in line:
        raise Irregular("carriage return")
    try:
        return tokenize(line)
    except ValueError:
        raise Irregular("tokens") from None


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
    lines: Iterable[str], path: str, apex: bytes, settings: ZoneSettings, start: Start | None = None
) -> ZonePiece:
    """The lines of one file, or of one piece of it (see ``split``), read into per-name nodes.

    ``lines`` may be an open file, the text (a ``str``), or lines that may
    keep their newline (``split()`` ignores it). This loop is most of the
    time a big zone takes to load: it avoids calls and temporaries for the
    common lines (a plain owner, a known type, one-token rdata).
    """
    if start is None:
        start = Start(1, apex, settings.default_ttl)
    out = ZonePiece(apex)
    nodes = out.nodes
    multi = out.multi
    targets = out.targets
    namer = _Names(apex)
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
    disagreed: set[tuple[bytes, int]] = set()
    u16s: dict[str, bytes] = {}
    rtypes = _LOWER_TYPES
    owner = b""  # none yet ("" is no name: the root is b"\x00")
    owner_text = ""
    context = rdata.RdataContext(target_of, settings.text_autosplit)
    origin = start.origin
    origin_deep = origin != apex
    owner_deep = False
    child_length = len(apex) + 1  # the length of a child of the apex, less its first label
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
    for first_number, batch, clean in _batches(lines, start.line):
        for number, line in enumerate(batch, first_number):
            if clean:
                tokens = line.split() if '"' not in line else quoted(line)
            elif special(line) is None:
                tokens = line.split()
            else:
                tokens = _special_tokens(line)
            if not tokens:
                continue
            if line[0] in " \t":
                if not owner:
                    raise Irregular("blank owner")
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
                    elif line[0] == "$":
                        _directive(tokens, namer)
                        if tokens[0].upper() == "$TTL":
                            default_ttl = parse_ttl(tokens[1])
                            default_clamped = not min_ttl <= default_ttl <= max_ttl
                        else:
                            # As the reference: $ORIGIN forgets the owner, $TTL does not.
                            owner = b""
                            owner_text = ""
                            origin = namer.origin
                            origin_deep = origin != apex
                            prefixes = _label_prefixes(origin)
                            target_cache = namer.cache
                        continue
                    else:
                        # Glue and other targets are owners too: the target cache may know them.
                        owner = target_cache.get(first) or wire_of(first)
                        if first[-1] == "." and not _within(owner, apex):
                            raise Irregular("owner outside the zone")
                        owner_deep = len(owner) != owner[0] + child_length
                    owner_text = first
                pos = 1
            count = len(tokens)
            try:
                rtype = rtypes.get(tokens[pos])
            except IndexError:
                raise Irregular("no type") from None
            if rtype is None:
                # A TTL and/or the class first, in either order (as zonefile._Parser.record).
                ttl, pos = _ttl_and_class(tokens, pos, default_ttl, ttls)
                if pos >= count:
                    raise Irregular("no type")
                rtype = rtypes.get(tokens[pos]) or _generic_type(tokens[pos])
                if (ttl < min_ttl or ttl > max_ttl) and rtype != _SOA:  # soa_rrset words the SOA's
                    ttl = _clamped(ttl, owner, number, settings, out.clamped)
            elif default_clamped and rtype != _SOA:
                ttl = _clamped(default_ttl, owner, number, settings, out.clamped)
            else:
                ttl = default_ttl
            pos += 1
            fields = count - pos
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
                    targets.append((rtype, owner, wire, number))
                elif rtype == _MX:
                    if fields != 2:
                        raise Irregular("MX")
                    wire = (u16s.get(tokens[pos]) or _u16(tokens[pos], u16s)) + (
                        target_cache.get(tokens[pos + 1]) or target_of(tokens[pos + 1])
                    )
                    targets.append((rtype, owner, wire, number))
                elif rtype == _SRV:
                    if fields != 4:
                        raise Irregular("SRV")
                    wire = (
                        (u16s.get(tokens[pos]) or _u16(tokens[pos], u16s))
                        + (u16s.get(tokens[pos + 1]) or _u16(tokens[pos + 1], u16s))
                        + (u16s.get(tokens[pos + 2]) or _u16(tokens[pos + 2], u16s))
                        + (target_cache.get(tokens[pos + 3]) or target_of(tokens[pos + 3]))
                    )
                    targets.append((rtype, owner, wire, number))
                elif rtype == _TXT:
                    if not fields:
                        raise Irregular("TXT")
                    wire = _txt(tokens[pos:])
                    if owner.startswith(_ACME):
                        # Served with the acme setting's TTL, whatever the file says.
                        if ttl != acme_ttl:
                            out.ttl_warnings.append((number, acme_overridden(owner, ttl, acme_ttl)))
                        ttl = acme_ttl
                else:
                    if rtype == _SOA and (owner != apex or out.soa is not None):
                        raise Irregular("SOA")
                    wire = rdata.encode(rtype, tokens[pos - 1].upper(), tokens[pos:], context)
                    if rtype == _SOA:
                        out.soa = Record(owner, rtype, ttl, wire, path, number)
            except (OSError, ValueError, names.NameError_):
                raise Irregular("rdata") from None
            # new_rrset, inlined: this runs once per record.
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
                if rtype == _CNAME or _CNAME in node:
                    raise Irregular("CNAME and other data")
                nodes[owner] = _with(node, rrset)
            else:
                if have.ttl != ttl and (owner, rtype) not in disagreed:
                    # The first record's TTL serves; the reference words it once per RRset.
                    disagreed.add((owner, rtype))
                    out.ttl_warnings.append((number, ttls_disagree(owner, rtype, have.ttl)))
                more = multi.get((owner, rtype))
                if more is None:
                    multi[(owner, rtype)] = [wire]
                else:
                    more.append(wire)
    for (name, rtype), more in multi.items():
        node = nodes[name]
        have = node[rtype]
        nodes[name] = _with(node, new_rrset(rtype, have.ttl, have.rdatas + tuple(more)))
    return out


def _with(node: model.Node, rrset: model.RRset) -> model.Node:
    """``node`` holding ``rrset`` too (in place of one of its type): a dict from the second type on."""
    if isinstance(node, dict):
        node[rrset.rtype] = rrset
        return node
    if node.rtype == rrset.rtype:
        return rrset
    return {node.rtype: node, rrset.rtype: rrset}


def _clamped(ttl: int, owner: bytes, line: int, settings: ZoneSettings, into: list[Finding]) -> int:
    """``ttl`` clamped into the settings' range, the warning into ``into``."""
    ttl, message = clamp_ttl(ttl, owner, "TTL", settings)
    if message is not None:
        into.append((line, message))
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


def _directive(tokens: list[str], namer: _Names) -> None:
    """$ORIGIN and $TTL (applied by the caller); anything else is Irregular."""
    name = tokens[0].upper()
    if len(tokens) != 2:
        raise Irregular(name)
    if name == "$TTL":
        try:
            parse_ttl(tokens[1])
        except ValueError:
            raise Irregular("$TTL") from None
    elif name == "$ORIGIN":
        origin = namer.wire(tokens[1])
        if not _within(origin, namer.apex):
            raise Irregular("$ORIGIN outside the zone")
        namer.set_origin(origin)
    else:
        raise Irregular(name)


def _cut_above(name: bytes, apex: bytes, cuts: set[bytes]) -> bytes | None:
    while name != apex:
        if name in cuts:
            return name
        name = name[name[0] + 1 :]
    return None


def _has_address(node: model.Node | None) -> bool:
    if node is None:
        return False
    if isinstance(node, dict):
        return _A in node or _AAAA in node
    return node.rtype in _ADDRESS


# A record the whole-zone rules may have to speak of: (target, type, owner, line).
Pointer = tuple[bytes, int, bytes, int]
# A warning to write: (line, message).
Finding = tuple[int, str]


@dataclass(slots=True)
class Leads:
    """What the pieces of a zone leave for the whole zone to settle (see ``piece_leads``).

    A piece settles alone what no other piece can change: names only gain
    RRsets when pieces merge, so a target found here with an address keeps
    it, a name outside the zone is nowhere, and the owners below one of the
    piece's own cuts are glue wherever the cut's other records are. What is
    left is small, so the serial check after the pieces merge is too.
    """

    used: set[bytes]  # NS targets
    unused: list[bytes]  # glue, and cuts with addresses, that no NS target of its piece names
    ns: list[bytes]  # NS targets not settled
    mx: list[Pointer]  # MX and SRV records whose target is not settled
    chains: list[Pointer]  # CNAME records the chain rule must follow
    plain: list[Pointer]  # CNAMEs to names with other data, not at or below a cut of their piece
    # Per piece: its cuts, the proper ancestors of its owners that it does not hold
    # (see ``_deep_names``), and its cuts' parents other than the apex.
    parts: list[tuple[set[bytes], set[bytes], set[bytes]]]
    warnings: list[Finding] = field(default_factory=list)  # settled within the piece
    apex_ns_lines: list[int] = field(default_factory=list)
    shared: set[bytes] = field(default_factory=set)  # names more than one piece holds

    def absorb(self, other: Leads) -> None:
        self.used |= other.used
        self.unused += other.unused
        self.ns += other.ns
        self.mx += other.mx
        self.chains += other.chains
        self.plain += other.plain
        self.parts += other.parts
        self.warnings += other.warnings
        self.apex_ns_lines += other.apex_ns_lines
        self.shared |= other.shared


def piece_leads(piece: ZonePiece) -> Leads:
    """The piece checked against its own names (Irregular if it is bad already), and what is left."""
    apex = piece.apex
    nodes = piece.nodes
    get = nodes.get
    within = _within
    address = _ADDRESS
    cuts: set[bytes] = set()
    used: set[bytes] = set()
    ns: list[bytes] = []
    mx: list[Pointer] = []
    chains: list[Pointer] = []
    plain: list[Pointer] = []
    warnings: list[Finding] = []
    apex_ns_lines: list[int] = []
    for rtype, owner, target, line in piece.targets:
        if rtype == _NS:
            used.add(target)
            if owner != apex:
                cuts.add(owner)
            else:
                apex_ns_lines.append(line)
            found = get(target)
            # A target holding an address here is fine anywhere.
            if found is None:
                if within(target, apex):
                    ns.append(target)
            elif (_A not in found and _AAAA not in found) if isinstance(found, dict) else found.rtype not in address:
                ns.append(target)
        elif rtype == _CNAME:
            found = get(target)
            if found is None:
                if within(target, apex):
                    chains.append((target, rtype, owner, line))
            elif _CNAME in found:
                chains.append((target, rtype, owner, line))
            else:
                plain.append((target, rtype, owner, line))
        elif rtype == _PTR:
            if within(target, apex):
                warnings.append((line, same_zone_ptr(owner, target)))
        else:
            name = target[2:] if rtype == _MX else target[6:]
            found = get(name)
            # A target holding an address here is fine anywhere.
            if found is None:
                if within(name, apex):
                    mx.append((name, rtype, owner, line))
            elif (_A not in found and _AAAA not in found) if isinstance(found, dict) else found.rtype not in address:
                mx.append((name, rtype, owner, line))
    glue, ancestors = _deep_names(piece.deep, nodes, apex, cuts)
    unused = _bad_glue(glue, cuts, nodes, used)
    if plain and (glue or cuts):
        # At or below a cut of this piece: the chain rule applies.
        below = cuts.union(glue)
        chains += [entry for entry in plain if entry[0] in below]
        plain = [entry for entry in plain if entry[0] not in below]
    cut_parents = {cut[cut[0] + 1 :] for cut in cuts}
    cut_parents.discard(apex)
    return Leads(used, unused, ns, mx, chains, plain, [(cuts, ancestors, cut_parents)], warnings, apex_ns_lines)


def _bad_glue(glue: list[bytes], cuts: set[bytes], nodes: dict[bytes, model.Node], used: set[bytes]) -> list[bytes]:
    """Irregular for data at or below a cut other than glue (and the cut's NS); the glue ``used`` does not hold."""
    unused: list[bytes] = []
    for cut in cuts:
        node = nodes[cut]
        if isinstance(node, dict):
            if any(rtype != _NS and rtype != _A and rtype != _AAAA for rtype in node):
                raise Irregular("data below a delegation")
            if (_A in node or _AAAA in node) and cut not in used:
                unused.append(cut)
            node = node[_NS]
        if len(node.rdatas) > MAX_NS_RRSET:  # a lone RRset at a cut is its NS
            raise Irregular("too many NS")
    for owner in [owner for owner in glue if isinstance(node := nodes[owner], dict) or node.rtype not in _ADDRESS]:
        node = nodes[owner]
        if not isinstance(node, dict) or any(rtype != _A and rtype != _AAAA for rtype in node):
            raise Irregular("data below a delegation")
    unused += [owner for owner in glue if owner not in used]
    return unused


def _deep_names(
    deep: list[bytes], nodes: dict[bytes, model.Node], apex: bytes, cuts: set[bytes]
) -> tuple[list[bytes], set[bytes]]:
    """The owners in ``deep`` strictly below a cut (less the cuts), and their proper ancestors below the apex not in ``nodes``.

    Less the names of every piece, the ancestors are the zone's empty
    non-terminals. One walk up from each distinct parent, to the first
    name already settled (or a cut): names share most of their ancestors.
    A walk that stops at a cut leaves the names above it to the cut's own
    entry in ``deep`` (a cut below a child of the apex is deep).
    """
    parents = [owner[owner[0] + 1 :] for owner in deep]
    under = set(cuts)  # at or below a cut
    settled = under | {apex, apex[apex[0] + 1 :]}  # the apex's parent is the apex's own, outside the zone
    walked: list[bytes] = []
    for start in set(parents).difference(settled):
        name = start
        chain = []
        while name not in settled:
            chain.append(name)
            name = name[name[0] + 1 :]
        settled.update(chain)
        walked += chain
        if name in under:
            under.update(chain)
    ancestors = set(walked).difference(nodes)
    glue = [owner for owner, parent in zip(deep, parents, strict=True) if parent in under and owner not in cuts] if cuts else []
    return glue, ancestors


def _glue_across(leads: Leads, cuts: set[bytes]) -> bool:
    """Whether a piece may hold names below another piece's cut, so its own glue check fell short.

    Such a name's ancestor is either a name its piece does not hold (in the
    piece's ancestors, which hold none of its own cuts) or one it holds that
    is a cut elsewhere (a name two pieces hold).
    """
    if any(not ancestors.isdisjoint(cuts) for _, ancestors, _ in leads.parts):
        return True
    return any(not all(name in part[0] for part in leads.parts) for name in leads.shared.intersection(cuts))


def _check(zone: ZonePiece, leads: Leads) -> tuple[set[bytes], set[bytes], list[Finding]]:
    """The zone's cuts, its empty non-terminals and its warnings; Irregular for an error.

    ``leads`` is what the pieces left (``piece_leads``), every piece's
    together. The warnings come in the reference path's order: the apex's,
    then those about records, by line.
    """
    apex = zone.apex
    nodes = zone.nodes
    apex_node = nodes.get(apex)
    if apex_node is None or zone.soa is None:
        raise Irregular("no SOA")
    apex_ns = apex_node.get(_NS)
    if apex_ns is None:
        raise Irregular("no apex NS")
    at_apex: list[Finding] = []
    if len(apex_ns.rdatas) == 1:
        at_apex.append((min(leads.apex_ns_lines), only_one_ns(apex)))
    soa_rdata = zone.soa.rdata
    pos = 0
    while soa_rdata[pos]:
        pos += soa_rdata[pos] + 1
    if soa_rdata[: pos + 1] not in apex_ns.rdatas:
        at_apex.append((zone.soa.line, mname_not_ns(apex)))
    if len(apex_ns.rdatas) > MAX_NS_RRSET:
        raise Irregular("too many NS")

    parts = leads.parts
    cuts = parts[0][0] if len(parts) == 1 else set().union(*(part[0] for part in parts))
    used = leads.used
    # Only a cut below a child of the apex can be nested; each parent walked once.
    for parent in set().union(*(part[2] for part in parts)):
        if _cut_above(parent, apex, cuts) is not None:
            raise Irregular("nested delegation")
    ents = set().union(*(part[1] for part in parts)).difference(nodes)

    if _glue_across(leads, cuts):
        # The pieces' glue checks do not cover it all: the whole zone's, as one piece.
        glue = _deep_names(zone.deep, nodes, apex, cuts)[0]
        if not used.issuperset(_bad_glue(glue, cuts, nodes, used)):
            raise Irregular("unused glue")
        below = cuts.union(glue)
        plain = [entry for entry in leads.plain if entry[0] in below]
    else:
        if not used.issuperset(leads.unused):
            raise Irregular("unused glue")
        plain = [entry for entry in leads.plain if entry[0] in cuts]  # the pieces set aside their own glue

    def in_below(name: bytes) -> bool:
        return name in nodes and _cut_above(name, apex, cuts) is not None

    for target in set(leads.ns):
        found = nodes.get(target)
        if found is not None:
            if not _has_address(found) and in_below(target):
                raise Irregular("glue missing")
        elif cuts and _within(target, apex) and _cut_above(target, apex, cuts) is not None:
            raise Irregular("glue missing")
    # Per record, as the reference path words it; each target looked at once.
    records: list[Finding] = list(leads.warnings)
    addressless: dict[bytes, bool] = {}
    for name, rtype, owner, line in leads.mx:
        bad = addressless.get(name)
        if bad is None:
            node = nodes.get(name)
            if node is not None:
                bad = not _has_address(node) and not in_below(name)
            else:
                bad = _within(name, apex) and (not cuts or _cut_above(name, apex, cuts) is None)
            addressless[name] = bad
        if bad:
            records.append((line, no_addresses(owner, rtype, name)))
    dangling: dict[bytes, bool] = {}
    for pointer in leads.chains:
        target = pointer[0]
        node = nodes.get(target)
        if node is None or _CNAME in node or in_below(target):
            _chain_finding(pointer, apex, nodes, ents, cuts, dangling, records)
    for pointer in plain:
        _chain_finding(pointer, apex, nodes, ents, cuts, dangling, records)
    records.sort(key=_line_of)
    return cuts, ents, at_apex + records


def _line_of(finding: Finding) -> int:
    return finding[0]


def _chain_finding(
    pointer: Pointer,
    apex: bytes,
    nodes: dict[bytes, model.Node],
    ents: set[bytes],
    cuts: set[bytes],
    dangling: dict[bytes, bool],
    into: list[Finding],
) -> None:
    """The chain rule for one CNAME record: its warning into ``into``; Irregular for an error."""
    target, _rtype, owner, line = pointer
    nx = dangling.get(target)
    if nx is None:
        nx = dangling[target] = _check_chain(target, apex, nodes, ents, cuts)
    if nx:
        into.append((line, cname_to_nxdomain(owner, target)))


def _check_chain(
    target: bytes,
    apex: bytes,
    nodes: dict[bytes, model.Node],
    ents: set[bytes],
    cuts: set[bytes],
) -> bool:
    """tree's CNAME chain rule: whether the first hop is a known NXDOMAIN (a warning); over-long chains are Irregular."""
    depth = 1
    first_hop = True
    while _within(target, apex):
        if cuts and _cut_above(target, apex, cuts) is not None:
            return False
        node = nodes.get(target)
        if node is not None:
            if _CNAME not in node:
                return False
            nxt = node[_CNAME].rdatas[0]
        elif target in ents:
            return False
        else:
            encloser = target[target[0] + 1 :]
            while encloser not in nodes and encloser not in ents:
                encloser = encloser[encloser[0] + 1 :]
            wild = nodes.get(_WILDCARD + encloser)
            if wild is None:
                return first_hop
            if _CNAME not in wild:
                return False
            nxt = wild[_CNAME].rdatas[0]
        depth += 1
        if depth > MAX_CNAME_CHAIN:
            raise Irregular("CNAME chain")
        target = nxt
        first_hop = False
    return False


def load_zone(path: str, apex: bytes, settings: ZoneSettings, report: Reporter | None = None) -> model.Zone:
    """The zone in ``path``, built as ``tree.build_zone`` would; ``Irregular`` when it can't vouch.

    The SOA warnings go to ``report`` (by default, the log).
    """
    if report is None:
        report = Reporter(settings.strict_data)
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115 - closed below
    except OSError:
        raise Irregular("unreadable") from None
    # The file's lines one at a time: no copy of the text, no list of its lines.
    with handle, collector_paused():
        return finish(parse_piece(handle, path, apex, settings), path, settings, report)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic GC while building: it would walk the growing, cycle-free tree again and again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def merge(into: ZonePiece, piece: ZonePiece) -> None:
    """Add a later piece of the same file to ``into``, as if read in one pass."""
    nodes = into.nodes
    later = piece.nodes
    for name in nodes.keys() & later.keys():
        node = nodes[name]
        for rtype, rrset in later.pop(name).items():
            have = node.get(rtype)
            if have is None:
                if rtype == _CNAME or _CNAME in node:
                    raise Irregular("CNAME and other data")
                node = _with(node, rrset)
            elif have.ttl != rrset.ttl:
                raise Irregular("TTLs disagree")
            else:
                node = _with(node, new_rrset(rtype, have.ttl, have.rdatas + rrset.rdatas))
                if rtype == _NS and len(have.rdatas) + len(rrset.rdatas) > MAX_NS_RRSET:
                    raise Irregular("too many NS")  # each piece checked its own part only
        nodes[name] = node
    nodes.update(later)
    into.targets.extend(piece.targets)
    into.deep.extend(piece.deep)
    into.clamped.extend(piece.clamped)
    into.ttl_warnings.extend(piece.ttl_warnings)
    if piece.soa is not None:
        if into.soa is not None:
            raise Irregular("SOA")
        into.soa = piece.soa


def finish(
    zone: ZonePiece, path: str, settings: ZoneSettings, report: Reporter, leads: Leads | None = None
) -> model.Zone:
    """The checks, then the ``Zone``; the warnings go to ``report``.

    ``leads`` are the pieces' (``piece_leads``) when ``zone`` was read in pieces.
    """
    apex = zone.apex
    cuts, ents, warnings = _check(zone, piece_leads(zone) if leads is None else leads)
    assert zone.soa is not None
    if settings.strict_data and (warnings or zone.ttl_warnings):
        raise Irregular("a warning made an error")  # the reference path words the first
    # After every Irregular, so no message is written twice.
    for line, message in warnings:
        report.warn(message, path, line)
    soa, serial = soa_rrset(apex, zone.soa, settings, report)
    for line, message in sorted(zone.clamped + zone.ttl_warnings, key=_line_of):
        report.warn(message, path, line, strictable=False)
    nodes = zone.nodes
    apex_node = nodes[apex]
    assert isinstance(apex_node, dict)  # it holds the SOA and the NS at least
    apex_node[_SOA] = soa
    nodes.update(dict.fromkeys(ents, EMPTY_NODE))
    return model.Zone(apex, serial, soa, nodes, frozenset(cuts), path)
