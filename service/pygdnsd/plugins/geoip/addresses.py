"""Client addresses as geoip maps look them up: one 128-bit space, IPv4 inside it.

Every map is one table over the IPv6 address space (``networks``). IPv4
lives in the v4compat space ``::/96``; the other IPv4-like IPv6 forms
(v4-mapped, SIIT, the RFC 6052 well-known prefix, Teredo, 6to4) are left
undefined in the table and are looked up as the IPv4 address they carry.
The scope a lookup reports is measured in the form the client sent, as
gdnsd 3.8.1's ``gdnsd_geoip_test`` shows it (all observed, e.g. a /8 IPv4
network is ``::ffff:10.0.0.0/104`` and ``2002:a00::/24``):

* IPv4: the table depth less 96 (never below 0);
* v4-mapped, SIIT, well-known prefix, Teredo: 96 plus that;
* 6to4: 16 plus that;
* other IPv6: the table depth itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

V4_DEPTH: Final = 96  # where the v4compat space begins in the 128-bit table

# (network, prefix length) of each IPv4-like space that is undefined in a map's
# table: never looked up (see ``lookup_key``), and no nets entry may lie in one.
UNDEFINED_SPACES: Final[tuple[tuple[int, int], ...]] = (
    (0xFFFF << 32, 96),  # ::ffff:0:0/96, v4-mapped (RFC 4291)
    (0xFFFF << 48, 96),  # ::ffff:0:0:0/96, SIIT (RFC 2765)
    (0x0064FF9B << 96, 96),  # 64:ff9b::/96, well-known prefix (RFC 6052)
    (0x20010000 << 96, 32),  # 2001::/32, Teredo (RFC 4380)
    (0x2002 << 112, 16),  # 2002::/16, 6to4 (RFC 3056)
)

# How a lookup's table depth becomes the scope the client is told, per form.
NATIVE: Final = 0
IPV4: Final = 1
EMBEDDED_96: Final = 2  # v4-mapped, SIIT, well-known prefix, Teredo
EMBEDDED_16: Final = 3  # 6to4

_V4MAPPED_HIGH: Final = 0xFFFF
_SIIT_HIGH: Final = 0xFFFF0000
_WKP_HIGH: Final = 0x0064FF9B << 64
_TEREDO_HIGH: Final = 0x20010000
_6TO4_HIGH: Final = 0x2002
_LOW32: Final = 0xFFFFFFFF


def lookup_key(packed: bytes) -> tuple[int, int]:
    """The table key for a client address (4 or 16 bytes, already masked) and its form."""
    if len(packed) == 4:
        return int.from_bytes(packed, "big"), IPV4
    value = int.from_bytes(packed, "big")
    high = value >> 32
    if high in (_V4MAPPED_HIGH, _SIIT_HIGH, _WKP_HIGH):
        return value & _LOW32, EMBEDDED_96
    if value >> 96 == _TEREDO_HIGH:
        return ~value & _LOW32, EMBEDDED_96  # Teredo stores the IPv4 address inverted
    if value >> 112 == _6TO4_HIGH:
        return (value >> 80) & _LOW32, EMBEDDED_16
    return value, NATIVE


def scope_of(depth: int, form: int) -> int:
    """The client-subnet scope for a table ``depth`` reached from an address of ``form``."""
    if form == NATIVE:
        return depth
    in_v4 = depth - V4_DEPTH if depth > V4_DEPTH else 0
    if form == IPV4:
        return in_v4
    return (96 if form == EMBEDDED_96 else 16) + in_v4


@dataclass(frozen=True)
class Network:
    """A network in the 128-bit table: IPv4 networks are already in ``::/96``."""

    start: int
    length: int
    cleared_bits: bool = False  # host bits were set in the text and were cleared


def parse_network(text: str) -> Network:
    """``addr/len`` as a table network; ValueError with the reason when it is not one.

    IPv4 networks land in the v4compat space; a network inside an undefined
    IPv4-like space is refused as gdnsd refuses it.
    """
    address, slash, length_text = text.partition("/")
    if not slash or not length_text.isdigit():
        raise ValueError("does not parse as addr/mask")
    length = int(length_text)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise ValueError(f"does not parse as addr/mask: {exc}") from None
    if ip.version == 4:
        if length > 32:
            raise ValueError("illegal IPv4 mask (>32)")
        length += V4_DEPTH
    elif length > 128:
        raise ValueError("illegal IPv6 mask (>128)")
    value = int(ip)
    mask = ((1 << length) - 1) << (128 - length) if length else 0
    start = value & mask
    if ip.version == 6:
        for space, space_length in UNDEFINED_SPACES:
            if length >= space_length and start >> (128 - space_length) == space >> (
                128 - space_length
            ):
                raise ValueError("covers illegal IPv4-like space, see the documentation")
    return Network(start, length, start != value)


def network_text(start: int, length: int) -> str:
    """How a table network reads in messages (IPv4 ones as IPv4)."""
    if length >= V4_DEPTH and start >> 32 == 0:
        return f"{ipaddress.IPv4Address(start)}/{length - V4_DEPTH}"
    return f"{ipaddress.IPv6Address(start)}/{length}"
