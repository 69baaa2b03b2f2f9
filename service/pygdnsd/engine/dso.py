"""DNS Stateful Operations (RFC 8490): the server side of a DSO session, as gdnsd 3.8.1 speaks it.

A TCP client opens a session with a Keepalive request; we answer with an
infinite keepalive interval (no pings wanted) and our inactivity timeout,
the listener's ``tcp_timeout`` (0 once we are shutting down). Inside the
session our answers carry no edns-tcp-keepalive option (RFC 8490 7.1.2),
and at shutdown we push a unidirectional Keepalive with inactivity 0.

What reaches ``answer`` is a DSO request with no records (``is_request``);
one with records, or one over UDP, is FORMERR and answered by
``query.parse`` like any malformed query. Everything else follows gdnsd:

* any RFC 8490 protocol error aborts the connection without an answer
  (``PROTOCOL_ERROR``): a unidirectional message from the client (ID 0), no
  room for a primary TLV, a primary RetryDelay or Padding TLV (server-only
  or additional-only types), TLV lengths that do not add up to the message,
  a Keepalive TLV whose length is not 8, and (``query.parse``) an
  edns-tcp-keepalive option inside a session;
* an unknown primary TLV gets DSOTYPENI and keeps the connection, without
  opening a session;
* additional TLVs (the client's padding included) are skipped.

With ``tcp_pad``, every DSO message we send is padded to 468 bytes with a
Padding TLV (RFC 8467's block size, as our EDNS padding).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

OPCODE = 6
TLV_KEEPALIVE = 1
TLV_RETRY_DELAY = 2
TLV_PADDING = 3
RCODE_DSOTYPENI = 11
PAD_BLOCK = 468

# A response's flags: QR and the DSO opcode; RD, AA, TC and the rest clear (RFC 8490 5.4).
_RESPONSE_FLAGS = 0x80 | OPCODE << 3
_HEADER_REST = b"\x00" * 8  # DSO messages carry no records
_TLV = struct.Struct("!HH")
_KEEPALIVE_TLV = struct.Struct("!HHII")
# Keepalive interval "infinite": we never ask for keepalive traffic; the
# inactivity timeout alone bounds an idle session (gdnsd.config, tcp_timeout).
_NO_KEEPALIVE = 0xFFFFFFFF


class Outcome(enum.Enum):
    KEEPALIVE = "keepalive"  # answered; the session is established (if it was not)
    TYPE_NOT_IMPLEMENTED = "typeni"  # DSOTYPENI answered; no session
    PROTOCOL_ERROR = "protoerr"  # no answer: abort the connection


@dataclass(frozen=True, slots=True)
class DsoReply:
    outcome: Outcome
    response: bytes | None  # None for PROTOCOL_ERROR


_PROTOCOL_ERROR = DsoReply(Outcome.PROTOCOL_ERROR, None)


def is_request(message: bytes) -> bool:
    """A DSO request for ``answer``: opcode DSO, QR clear, no records (any other message: ``query.parse``)."""
    return len(message) >= 12 and message[2] & 0xF8 == OPCODE << 3 and message[4:12] == _HEADER_REST


def answer(message: bytes, inactivity_ms: int, pad: bool) -> DsoReply:
    """What a DSO request (``is_request``) gets on a TCP connection."""
    size = len(message)
    if message[:2] == b"\x00\x00" or size < 16:
        return _PROTOCOL_ERROR  # unidirectional from the client, or no primary TLV
    primary, length = _TLV.unpack_from(message, 12)
    if primary in (TLV_RETRY_DELAY, TLV_PADDING):
        return _PROTOCOL_ERROR
    end = 16 + length
    while size >= end + 4:
        end += 4 + _TLV.unpack_from(message, end)[1]
    if end != size:
        return _PROTOCOL_ERROR
    if primary == TLV_KEEPALIVE:
        if length != 8:
            return _PROTOCOL_ERROR
        body = _KEEPALIVE_TLV.pack(TLV_KEEPALIVE, 8, _NO_KEEPALIVE, inactivity_ms)
        return DsoReply(Outcome.KEEPALIVE, _padded(_header(message[:2], 0) + body, pad))
    return DsoReply(Outcome.TYPE_NOT_IMPLEMENTED, _padded(_header(message[:2], RCODE_DSOTYPENI), pad))


def closing_keepalive(pad: bool) -> bytes:
    """The unidirectional Keepalive (ID 0, inactivity 0) asking a session's client to close: we are stopping."""
    body = _KEEPALIVE_TLV.pack(TLV_KEEPALIVE, 8, _NO_KEEPALIVE, 0)
    return _padded(b"\x00\x00" + bytes((OPCODE << 3, 0)) + _HEADER_REST + body, pad)


def _header(message_id: bytes, rcode: int) -> bytes:
    return message_id + bytes((_RESPONSE_FLAGS, rcode)) + _HEADER_REST


def _padded(message: bytes, pad: bool) -> bytes:
    """``message`` with a Padding TLV bringing it to ``PAD_BLOCK`` bytes (every DSO message we send is shorter)."""
    if not pad:
        return message
    fill = PAD_BLOCK - len(message) - 4
    return message + _TLV.pack(TLV_PADDING, fill) + b"\x00" * fill
