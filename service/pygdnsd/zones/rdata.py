"""Record data: presentation tokens -> uncompressed wire rdata, per type.

The types are the ones gdnsd 3.8.1 reads natively (SOA A AAAA NS PTR CNAME
MX SRV TXT NAPTR CAA, plus its DYNA/DYNC) and RFC 3597 ``TYPEnnn \\# len
hex``. Checked against the real gdnsd: SPF, DNAME, HINFO, DS and other
mnemonics are parse errors (DNAME and SPF can be written as TYPE39/TYPE99);
RFC 3597 may not encode natively supported types, HINFO (13), type 0 or the
meta types 249-255; ``\\# 0`` (empty rdata) is rejected. Embedded names are
lowercased. Numeric SOA fields accept TTL units (``3D``), other numbers are
plain digits.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pygdnsd.zones import model

# TXT rdata above this (wire) size is a parse error in gdnsd.
MAX_TXT_RDATA = 16000

NATIVE_TYPES: dict[str, int] = {
    "A": model.A,
    "AAAA": model.AAAA,
    "NS": model.NS,
    "CNAME": model.CNAME,
    "PTR": model.PTR,
    "MX": model.MX,
    "SRV": model.SRV,
    "TXT": model.TXT,
    "SOA": model.SOA,
    "NAPTR": model.NAPTR,
    "CAA": model.CAA,
    "DYNA": model.DYNA,
    "DYNC": model.DYNC,
}
_NAMES = {code: text for text, code in NATIVE_TYPES.items()}
# RFC 3597 may not stand in for these: gdnsd parses them natively.
_TRADITIONAL = frozenset(
    (model.A, model.NS, model.CNAME, model.SOA, model.PTR, model.MX, model.TXT, model.AAAA, model.SRV, model.NAPTR)
)
# Meta types, and HINFO which gdnsd keeps for its RFC 8482 ANY answers.
_FORBIDDEN_GENERIC = frozenset((0, model.HINFO, *range(249, 256)))

_TTL_RE = re.compile(r"([0-9]+)([mMhHdDwW]?)")
_UNIT = {"": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TYPE_RE = re.compile(r"TYPE([0-9]+)")
_DIGITS_RE = re.compile(r"[0-9]+")
_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})+")
_CAA_TAG_RE = re.compile(r"[0-9A-Za-z]+")
# ``plugin`` alone (null, reflect) or ``plugin!resource``; gdnsd refuses a second ``!`` or an empty resource.
_DYN_RE = re.compile(r"[^!\s]+(?:![^!\s]+)?")
_ESCAPE_RE = re.compile(rb"\\(?:([0-9]{3})|(.))", re.DOTALL)


@dataclass(frozen=True, slots=True)
class RdataContext:
    """What encoding needs from the file being parsed."""

    resolve_name: Callable[[str], bytes]
    text_autosplit: bool = True


def parse_ttl(text: str) -> int:
    """A TTL-like field's value: digits, one optional m/h/d/w unit, wrapping at 2^32."""
    match = _TTL_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid TTL {text!r} (digits with an optional m/h/d/w unit)")
    return (int(match.group(1)) * _UNIT[match.group(2).lower()]) & 0xFFFFFFFF


def type_name(rtype: int) -> str:
    """The mnemonic gdnsd uses for ``rtype`` (``TYPEnnn`` when it has none)."""
    return _NAMES.get(rtype) or f"TYPE{rtype}"


def type_code(text: str) -> int:
    """The type number for an upper-case type mnemonic or ``TYPEnnn``."""
    code = NATIVE_TYPES.get(text)
    if code is not None:
        return code
    match = _TYPE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"unsupported record type {text!r}")
    code = int(match.group(1))
    if code > 0xFFFF:
        raise ValueError(f"record type {text} is out of range (1-65535)")
    return code


def _unescape(token: str) -> bytes:
    """A character-string's bytes: quotes removed, ``\\X`` and ``\\DDD`` decoded."""
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        token = token[1:-1]
    raw = token.encode("utf-8", "surrogateescape")
    if b"\\" not in raw:
        return raw

    def decode(match: re.Match[bytes]) -> bytes:
        digits = match.group(1)
        if digits is not None:
            value = int(digits)
            if value > 255:
                raise ValueError(f"text has a bad escape sequence \\{digits.decode()} (above 255)")
            return bytes((value,))
        return match.group(2)

    if raw.endswith(b"\\") and not raw.endswith(b"\\\\"):
        raise ValueError("text ends in a lone backslash")
    return _ESCAPE_RE.sub(decode, raw)


def _number(token: str, bits: int, what: str) -> int:
    if _DIGITS_RE.fullmatch(token) is None:
        raise ValueError(f"{what} {token!r} is not a number")
    value = int(token)
    if value >= 1 << bits:
        raise ValueError(f"{what} value {value} too large")
    return value


def _count(tokens: list[str], expected: int, rtype: str) -> None:
    if len(tokens) != expected:
        raise ValueError(f"{rtype} record needs {expected} rdata fields, found {len(tokens)}")


def _character_string(data: bytes, what: str) -> bytes:
    if len(data) > 255:
        raise ValueError(f"{what} string longer than 255 bytes")
    return bytes((len(data),)) + data


def _txt(tokens: list[str], context: RdataContext) -> bytes:
    if not tokens:
        raise ValueError("TXT record needs at least one string")
    out = bytearray()
    for tok in tokens:
        data = _unescape(tok)
        if len(data) > MAX_TXT_RDATA:
            raise ValueError(f"text chunk too long (>{MAX_TXT_RDATA} unescaped)")
        if len(data) > 255 and not context.text_autosplit:
            raise ValueError("text chunk too long (>255 unescaped) and disable_text_autosplit is set")
        if not data:
            out.append(0)
        for start in range(0, len(data), 255):
            chunk = data[start : start + 255]
            out.append(len(chunk))
            out += chunk
    if len(out) > MAX_TXT_RDATA:
        raise ValueError(f"TXT rdata too long (over {MAX_TXT_RDATA} bytes)")
    return bytes(out)


def _soa(tokens: list[str], context: RdataContext) -> bytes:
    _count(tokens, 7, "SOA")
    out = context.resolve_name(tokens[0]) + context.resolve_name(tokens[1])
    for tok in tokens[2:]:
        out += parse_ttl(tok).to_bytes(4, "big")
    return out


def _generic(rtype: int, text: str, tokens: list[str]) -> bytes:
    if rtype in _TRADITIONAL:
        raise ValueError(f"RFC3597 {text} not allowed, please use the explicit support built in for this RR type")
    if rtype in _FORBIDDEN_GENERIC:
        raise ValueError(f"RFC3597 {text} not allowed")
    if len(tokens) < 2 or tokens[0] != "\\#":
        raise ValueError(f"{text} needs RFC 3597 rdata: \\# length hex")
    length = _number(tokens[1], 16, "RFC3597 rdata length")
    # gdnsd wants whole bytes in every hex word, not just in their concatenation.
    if any(_HEX_RE.fullmatch(word) is None for word in tokens[2:]):
        raise ValueError("RFC3597 rdata must be hex digits in pairs")
    hexdata = "".join(tokens[2:])
    if length == 0:
        raise ValueError("RFC3597 rdata length 0 (empty rdata) is not accepted by gdnsd")
    data = bytes.fromhex(hexdata)
    if len(data) != length:
        raise ValueError(
            f"RFC3597 generic RR claimed rdata length of {length}, but {len(data)} bytes of data present"
        )
    return data


def encode(rtype: int, text: str, tokens: list[str], context: RdataContext) -> bytes:
    """The wire rdata of one record; ``ValueError`` says what is wrong with it."""
    if text not in NATIVE_TYPES:
        return _generic(rtype, text, tokens)
    if rtype == model.A:
        _count(tokens, 1, "A")
        try:
            return socket.inet_pton(socket.AF_INET, tokens[0])
        except OSError:
            raise ValueError(f"IPv4 address '{tokens[0]}' invalid") from None
    if rtype == model.AAAA:
        _count(tokens, 1, "AAAA")
        try:
            return socket.inet_pton(socket.AF_INET6, tokens[0])
        except OSError:
            raise ValueError(f"IPv6 address '{tokens[0]}' invalid") from None
    if rtype in (model.NS, model.CNAME, model.PTR):
        _count(tokens, 1, text)
        return context.resolve_name(tokens[0])
    if rtype == model.MX:
        _count(tokens, 2, "MX")
        pref = _number(tokens[0], 16, "MX preference")
        return pref.to_bytes(2, "big") + context.resolve_name(tokens[1])
    if rtype == model.SRV:
        _count(tokens, 4, "SRV")
        fields = zip(tokens[:3], ("SRV priority", "SRV weight", "SRV port"), strict=True)
        head = b"".join(_number(tok, 16, what).to_bytes(2, "big") for tok, what in fields)
        return head + context.resolve_name(tokens[3])
    if rtype == model.TXT:
        return _txt(tokens, context)
    if rtype == model.SOA:
        return _soa(tokens, context)
    if rtype == model.NAPTR:
        _count(tokens, 6, "NAPTR")
        head = _number(tokens[0], 16, "NAPTR order").to_bytes(2, "big")
        head += _number(tokens[1], 16, "NAPTR preference").to_bytes(2, "big")
        for tok in tokens[2:5]:
            head += _character_string(_unescape(tok), "NAPTR")
        return head + context.resolve_name(tokens[5])
    if rtype == model.CAA:
        _count(tokens, 3, "CAA")
        flags = _number(tokens[0], 32, "CAA flags")
        if flags > 255:
            raise ValueError(f"CAA flags byte value {flags} is >255")
        tag = tokens[1]
        if _CAA_TAG_RE.fullmatch(tag) is None or len(tag) > 255:
            raise ValueError(f"CAA tag {tag!r} must be letters and digits")
        return bytes((flags, len(tag))) + tag.encode() + _unescape(tokens[2])
    if rtype in (model.DYNA, model.DYNC):
        _count(tokens, 1, text)
        if _DYN_RE.fullmatch(tokens[0]) is None:
            raise ValueError(f"{text} data must be plugin!resource (or a plugin name alone), not {tokens[0]!r}")
        return tokens[0].encode("utf-8", "surrogateescape")
    raise AssertionError(f"no encoder for native type {text}")
