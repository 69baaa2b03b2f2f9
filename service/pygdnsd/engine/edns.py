"""EDNS(0): reading a query's OPT record and writing ours (RFC 6891).

Options handled: NSID (RFC 5001), client subnet (RFC 7871), cookies
(RFC 7873), TCP keepalive (RFC 7828), padding (RFC 7830/8467).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

OPT_NSID = 3
OPT_CLIENT_SUBNET = 8
OPT_COOKIE = 10
OPT_KEEPALIVE = 11
OPT_PADDING = 12

# gdnsd always advertises this UDP payload size in its OPT record.
OUR_UDP_SIZE = 1024

_OPT_HEAD = struct.Struct("!BHHIH")
_OPTION = struct.Struct("!HH")


class EdnsFormatError(ValueError):
    """The OPT record is malformed: the query gets FORMERR."""

    def __init__(
        self, message: str, cookie: bool = False, request: EdnsRequest | None = None
    ) -> None:
        super().__init__(message)
        self.cookie = cookie
        # What was understood of the OPT record: the FORMERR response carries
        # an OPT built from it (gdnsd answers malformed options that way).
        self.request = request


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    family: int
    source_prefix: int
    address: bytes


@dataclass(frozen=True, slots=True)
class EdnsRequest:
    """What a query's OPT record asked for."""

    udp_size: int
    version: int
    do: bool
    nsid: bool = False
    cookie: bytes | None = None
    client_subnet: ClientSubnet | None = None
    # How many client-subnet options the query carried, malformed ones
    # included: gdnsd counts each in ``edns_clientsub`` (and echoes the last).
    client_subnets: int = 0
    # The query carried an edns-tcp-keepalive option (RFC 7828): a protocol
    # error inside a DSO session (RFC 8490 7.1), otherwise ignored.
    keepalive: bool = False


def parse_opt(rclass: int, ttl: int, rdata: bytes, with_subnet: bool, with_cookies: bool) -> EdnsRequest:
    """Decode an OPT RR's fields (the owner name and type were checked by the caller).

    ``with_subnet``/``with_cookies`` false: those options are ignored, as
    gdnsd does with ``edns_client_subnet => false``/``disable_cookies``.
    """
    version = (ttl >> 16) & 0xFF
    do = bool(ttl & 0x8000)
    udp_size = max(rclass, 512)
    if version:
        # Answered BADVERS; gdnsd does not read the options of a version it does not speak.
        return EdnsRequest(udp_size, version, do)
    return _parse_options(udp_size, do, rdata, with_subnet, with_cookies)


def _parse_options(udp_size: int, do: bool, rdata: bytes, with_subnet: bool, with_cookies: bool) -> EdnsRequest:
    nsid = False
    cookie = None
    subnet = None
    subnets = 0
    keepalive = False
    pos = 0
    end = len(rdata)
    try:
        while pos < end:
            if pos + 4 > end:
                raise EdnsFormatError("truncated EDNS option header")
            code, length = _OPTION.unpack_from(rdata, pos)
            pos += 4
            if pos + length > end:
                raise EdnsFormatError("EDNS option runs past the OPT record")
            if code == OPT_NSID:
                if length:
                    raise EdnsFormatError("NSID option in a query must be empty")
                nsid = True
            elif code == OPT_COOKIE and with_cookies and cookie is None:
                # Only the first cookie option counts; gdnsd skips later ones unread.
                if length != 8 and not 16 <= length <= 40:
                    raise EdnsFormatError("bad cookie length", cookie=True)
                cookie = rdata[pos : pos + length]
            elif code == OPT_CLIENT_SUBNET and with_subnet:
                subnets += 1
                subnet = _parse_client_subnet(rdata[pos : pos + length])
            elif code == OPT_KEEPALIVE:
                keepalive = True
            pos += length
    except EdnsFormatError as bad:
        # gdnsd reads options in order: its FORMERR carries an OPT answering
        # those read before the bad one (cookie, NSID, subnet echo).
        bad.request = EdnsRequest(udp_size, 0, do, nsid, cookie, subnet, subnets, keepalive)
        raise
    return EdnsRequest(udp_size, 0, do, nsid, cookie, subnet, subnets, keepalive)


def _parse_client_subnet(data: bytes) -> ClientSubnet:
    if len(data) < 4:
        raise EdnsFormatError("client subnet option too short")
    family, source, scope = struct.unpack_from("!HBB", data)
    address = data[4:]
    if family == 1:
        max_prefix = 32
    elif family == 2:
        max_prefix = 128
    else:
        raise EdnsFormatError("client subnet family unknown")
    if source > max_prefix or scope != 0:
        raise EdnsFormatError("client subnet prefix out of range")
    if len(address) != (source + 7) // 8:
        raise EdnsFormatError("client subnet address length does not match its prefix")
    if address and source % 8 and address[-1] & (0xFF >> (source % 8)):
        raise EdnsFormatError("client subnet address has bits set past its prefix")
    return ClientSubnet(family, source, address)


def server_cookie(secret: bytes, client_cookie: bytes, client_ip: bytes) -> bytes:
    """Our 8-byte server cookie: a keyed hash of the client cookie and address."""
    return hashlib.blake2b(client_cookie + client_ip, key=secret, digest_size=8).digest()


def option(code: int, data: bytes) -> bytes:
    return _OPTION.pack(code, len(data)) + data


def opt_record(ext_rcode: int, do: bool, options: bytes) -> bytes:
    """Our OPT RR: root owner, our UDP size, version 0."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return _OPT_HEAD.pack(0, 41, OUR_UDP_SIZE, ttl, len(options)) + options


def padding_option(unpadded_length: int, block: int = 468) -> bytes:
    """The padding option that brings a message of ``unpadded_length`` to a multiple of ``block``."""
    with_header = unpadded_length + 4
    pad = (-with_header) % block
    return option(OPT_PADDING, b"\x00" * pad)
