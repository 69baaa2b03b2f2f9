"""gdnsd's control socket protocol, sans I/O (ControlSocket.md in gdnsd's docs).

Every message starts with an 8-byte header: key ``k``, three bytes ``v0 v1 v2``
and a 32-bit ``d`` in *host* byte order (gdnsd 3.x speaks native order even
over TCP). ``v`` holds a version (major, minor, patch) or a 24-bit
network-order count; ``d`` is usually the byte length of data that follows,
but for some keys it is a PID. Whether data follows depends on the key (and,
for responses, on the request being answered), so framing lives here next to
the key definitions.

One extension, invisible to clients that do not ask for it: a failure's
reason. ControlSocket.md gives RESP_FAIL no data, so a failed reload told
the client nothing, and the reason went to a log the operator may not have
(no syslog). A client that wants the reason sends REQ_ZREL with ``d`` set to
the most bytes of reason it will read (``REASON_LIMIT``; gdnsd 3.8.1 ignores
ZREL's ``d``, and reloads as usual: measured). A failure then comes as
RESP_FAIL with ``d`` bytes of UTF-8 text after it, at most what was asked.
Clients that send ``d`` = 0, as the spec says (Debian's gdnsdctl, any other),
get the bare RESP_FAIL they expect and never meet data they do not read.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from pygdnsd.errors import GdnsdError
from pygdnsd.zones import names

HEADER_SIZE = 8
_HEADER = struct.Struct("=BBBBI")  # "=": native byte order, standard sizes, no padding
MAX_D = 0xFFFFFFFF
MAX_COUNT = 0xFFFFFF

# The gdnsd release whose protocol we speak; sent and reported as our version
# so that gdnsd peers apply their 3.8.1 compatibility rules to us.
COMPAT_VERSION = (3, 8, 1)

ACME_PAYLOAD_LEN = 43
# gdnsd's bounds on one REQ_CHAL: at most 100 challenges (gdnsdctl's most per
# call), each a name of at most 239 wire bytes (so that ``_acme-challenge.``
# before it still fits 255) with its payload, so at most 100 * (240 + 44) bytes.
ACME_MAX_PER_GDNSDCTL = 100
ACME_MAX_NAME = 239
# Each encoded challenge: name length byte, name, payload, NUL terminator.
_MAX_CHALLENGE_SIZE = 1 + ACME_MAX_NAME + ACME_PAYLOAD_LEN + 1
MAX_CHALLENGE_DATA = ACME_MAX_PER_GDNSDCTL * _MAX_CHALLENGE_SIZE  # 28400
_ACME_PAYLOAD_RE = re.compile(rb"[A-Za-z0-9_-]{43}")

# Largest request payload a server accepts: only REQ_CHAL carries one.
MAX_REQUEST_PAYLOAD = MAX_CHALLENGE_DATA
# Most bytes a server buffers from one client before they form requests:
# pipelined requests arrive many per read, so room for far more than one.
MAX_BUFFERED = 1 << 20
# Largest response payload a client accepts (stats/states JSON, challenge dumps).
MAX_RESPONSE_PAYLOAD = 64 << 20


class ProtocolError(GdnsdError):
    """Bytes that do not form a valid control message; the message says which rule broke."""


class RequestKey(IntEnum):
    """Request keys (the gdnsd docs call them REQ_*)."""

    INFO = ord("I")  # version + daemon PID
    STAT = ord("S")  # stats JSON
    STATE = ord("E")  # monitored states JSON
    ZREL = ord("Z")  # reload zones (ACK once done)
    STOP = ord("X")  # stop; connection left open until the daemon exits
    REPL = ord("R")  # replace the daemon with a fresh copy of itself
    CHAL = ord("C")  # add ACME DNS-01 challenges (v: count, d: data length)
    CHALF = ord("c")  # flush ACME challenges
    # Inter-daemon takeover only (d: the new daemon's PID).
    TAK1 = ord("1")  # lock the old daemon onto this replacement
    TAK2 = ord("2")  # ACK carries all live challenges
    TAKE = ord("T")  # ACK carries listener fds via SCM_RIGHTS (v: fd count)


class ResponseKey(IntEnum):
    """Response keys (RESP_*); ``v``/``d`` are zero and no data follows, except for ACK."""

    ACK = ord("A")
    DENY = ord("D")  # denied by policy (e.g. a read-write request over TCP)
    FAIL = ord("F")
    LATR = ord("L")  # try again later: a replace is in progress
    UNK = ord("U")  # unknown request type


# The one server-initiated message: the old daemon's final stats, pushed to
# the new one during a takeover (d: byte length, a multiple of 8).
PSH_SHAND = ord("s")

# Requests whose ``d`` may ask for a failure's reason (see the module docstring).
REASON_REQUESTS = frozenset({RequestKey.ZREL})
# The most bytes of reason our clients ask for: a file:line and its problem, with room.
REASON_LIMIT = 4096

READONLY_REQUESTS = frozenset({RequestKey.INFO, RequestKey.STAT, RequestKey.STATE})
# What a ``tcp_control`` address with ``chal_ok`` permits beyond the read-only requests.
CHALLENGE_REQUESTS = frozenset({RequestKey.CHAL, RequestKey.CHALF})
# What ``ctl_ok`` permits; REQ_STOP and the takeover keys are for the unix socket only.
DAEMON_CONTROL_REQUESTS = frozenset({RequestKey.ZREL, RequestKey.REPL})
TAKEOVER_REQUESTS = frozenset({RequestKey.TAK1, RequestKey.TAK2, RequestKey.TAKE})
STATE_CHANGING_REQUESTS = frozenset(RequestKey) - READONLY_REQUESTS - TAKEOVER_REQUESTS


@dataclass(frozen=True)
class Header:
    """The 8-byte header every message starts with."""

    key: int
    v0: int = 0
    v1: int = 0
    v2: int = 0
    d: int = 0

    def __post_init__(self) -> None:
        for field_name in ("key", "v0", "v1", "v2"):
            value = getattr(self, field_name)
            if not 0 <= value <= 0xFF:
                raise ProtocolError(f"header field {field_name}={value} does not fit a byte")
        if not 0 <= self.d <= MAX_D:
            raise ProtocolError(f"header field d={self.d} does not fit 32 bits")

    @property
    def version(self) -> tuple[int, int, int]:
        return (self.v0, self.v1, self.v2)

    @property
    def count(self) -> int:
        """``v`` read as a 24-bit network-order count."""
        return (self.v0 << 16) | (self.v1 << 8) | self.v2

    def encode(self) -> bytes:
        return _HEADER.pack(self.key, self.v0, self.v1, self.v2, self.d)


def decode_header(raw: bytes) -> Header:
    """Parse exactly 8 bytes; any 8 bytes form a header."""
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"a header is {HEADER_SIZE} bytes, got {len(raw)}")
    key, v0, v1, v2, d = _HEADER.unpack(raw)
    return Header(key, v0, v1, v2, d)


def header_with_count(key: int, count: int, d: int = 0) -> Header:
    if not 0 <= count <= MAX_COUNT:
        raise ProtocolError(f"count {count} does not fit 24 bits")
    return Header(key, (count >> 16) & 0xFF, (count >> 8) & 0xFF, count & 0xFF, d)


def header_with_version(key: int, version: tuple[int, int, int], d: int = 0) -> Header:
    return Header(key, version[0], version[1], version[2], d)


@dataclass(frozen=True)
class Message:
    """A header and the data that follows it (empty for most messages)."""

    header: Header
    payload: bytes = b""

    @property
    def key(self) -> int:
        return self.header.key

    def encode(self) -> bytes:
        return self.header.encode() + self.payload


@dataclass(frozen=True)
class Request(Message):
    """A message from the connecting side."""


@dataclass(frozen=True)
class Response(Message):
    """A message from the accepting side."""


def key_name(key: int) -> str:
    """``REQ_INFO``-style name of a key, or its byte value when unknown (for logs)."""
    if key in RequestKey._value2member_map_:
        return "REQ_" + RequestKey(key).name
    if key in ResponseKey._value2member_map_:
        return "RESP_" + ResponseKey(key).name
    if key == PSH_SHAND:
        return "PSH_SHAND"
    return f"key 0x{key:02x}"


# --- requests ---------------------------------------------------------------


def info_request(version: tuple[int, int, int]) -> Request:
    return Request(header_with_version(RequestKey.INFO, version))


def plain_request(key: RequestKey) -> Request:
    """A request that is only a header with zero ``v`` and ``d`` (STAT, STATE, ZREL, ...)."""
    return Request(Header(key))


def request_with_reason(key: RequestKey, limit: int = REASON_LIMIT) -> Request:
    """A plain request asking that a failure come with its reason, at most ``limit`` bytes."""
    if key not in REASON_REQUESTS:
        raise ProtocolError(f"{key_name(key)} cannot carry a failure's reason")
    return Request(Header(key, d=limit))


def reason_limit(request: Request) -> int:
    """How many bytes of a failure's reason ``request`` asked for (0: a bare RESP_FAIL)."""
    return request.header.d if request.key in REASON_REQUESTS else 0


def takeover_request(key: RequestKey, pid: int) -> Request:
    if key not in TAKEOVER_REQUESTS:
        raise ProtocolError(f"{key_name(key)} is not a takeover request")
    return Request(Header(key, d=pid))


def challenge_request(challenges: Sequence[AcmeChallenge]) -> Request:
    data = encode_challenges(challenges)
    return Request(header_with_count(RequestKey.CHAL, len(challenges), len(data)), data)


def request_payload_length(header: Header) -> int:
    """Bytes of data following a request header (only REQ_CHAL has any).

    Raises ProtocolError for a challenge header outside gdnsd's bounds (1-100
    challenges, 1-28400 bytes): the stream cannot be trusted after that, so
    the connection must close, as gdnsd closes it. Sizes within the bounds
    that do not fit the count are read, and the request fails
    (``decode_challenges``) on a connection that stays usable, as in gdnsd.
    """
    if header.key != RequestKey.CHAL:
        return 0
    count, size = header.count, header.d
    if not 0 < count <= ACME_MAX_PER_GDNSDCTL or not 0 < size <= MAX_CHALLENGE_DATA:
        raise ProtocolError(f"challenge request has illegal sizes ({count} count, {size} data)")
    return size


# --- responses --------------------------------------------------------------


def response(key: ResponseKey) -> Response:
    """A bare DENY/FAIL/LATR/UNK (or an ACK with nothing in it)."""
    return Response(Header(key))


def failure(reason: str, limit: int) -> Response:
    """RESP_FAIL, with ``reason`` (UTF-8, cut to ``limit`` bytes) after it when ``limit`` asks for one."""
    text = reason.encode("utf-8", "replace")[: min(limit, MAX_D)]
    # A cut may split a character: drop its leftover bytes, never send invalid UTF-8.
    text = text.decode("utf-8", "ignore").encode("utf-8")
    return Response(Header(ResponseKey.FAIL, d=len(text)), text)


def info_ack(version: tuple[int, int, int], pid: int) -> Response:
    return Response(header_with_version(ResponseKey.ACK, version, pid))


def data_ack(data: bytes, count: int = 0) -> Response:
    """An ACK followed by ``data`` (``d`` is its length; ``v`` an optional count)."""
    if len(data) > MAX_D:
        raise ProtocolError(f"response data of {len(data)} bytes does not fit 32 bits")
    return Response(header_with_count(ResponseKey.ACK, count, len(data)), data)


def response_payload_length(request_key: int, header: Header, reason_limit: int = 0) -> int:
    """Bytes of data following a response header, given the request it answers.

    ``reason_limit``: what the request asked for of a failure's reason (0: none,
    so a RESP_FAIL's ``d`` means nothing, as in gdnsd).
    """
    if header.key == ResponseKey.FAIL and reason_limit:
        if header.d > reason_limit:
            raise ProtocolError(f"failure reason of {header.d} bytes, over the {reason_limit} asked for")
        return header.d
    if header.key != ResponseKey.ACK:
        return 0
    if request_key in (RequestKey.STAT, RequestKey.STATE, RequestKey.TAK2):
        if header.d > MAX_RESPONSE_PAYLOAD:
            raise ProtocolError(f"response claims {header.d} bytes of data, over the limit")
        return header.d
    # INFO's d is a PID; TAKE's fds travel out of band; the rest carry nothing.
    return 0


# --- ACME DNS-01 challenges ---------------------------------------------------


@dataclass(frozen=True)
class AcmeChallenge:
    """One ACME DNS-01 payload for ``_acme-challenge.<name>``; ``name`` is lowercase wire form."""

    name: bytes
    payload: bytes

    def __post_init__(self) -> None:
        if not _ACME_PAYLOAD_RE.fullmatch(self.payload):
            raise ProtocolError(
                f"ACME payload must be {ACME_PAYLOAD_LEN} base64url characters, got {self.payload!r}"
            )
        if not _is_wire_name(self.name):
            raise ProtocolError(f"ACME challenge name {self.name!r} is not a wire-format name")
        if len(self.name) > ACME_MAX_NAME:
            raise ProtocolError(
                f"ACME challenge name {names.to_text(self.name)} is over {ACME_MAX_NAME} bytes: "
                "_acme-challenge before it would not fit a name"
            )


def parse_acme_challenge(name_text: str, payload_text: str) -> AcmeChallenge:
    """A challenge from gdnsdctl's arguments, checked and worded as gdnsdctl does.

    A leading ``_acme-challenge.`` is dropped (gdnsdctl forgives it), and
    ``@`` is a label like any other here, not an origin.
    """
    if name_text.startswith("_acme-challenge."):
        name_text = name_text[len("_acme-challenge.") :]
    try:
        name = b"\x01@\x00" if name_text == "@" else names.from_text(name_text, names.ROOT)
    except names.NameError_ as exc:
        raise ProtocolError(f"Could not parse domainname '{name_text}'") from exc
    if len(name) > ACME_MAX_NAME:
        raise ProtocolError(f"Domainname '{name_text}' is too long for ACME DNS-01 challenges")
    payload = payload_text.encode("utf-8", "surrogateescape")
    if len(payload) != ACME_PAYLOAD_LEN:
        raise ProtocolError(f"Payload for '{name_text}' is not {ACME_PAYLOAD_LEN} bytes long")
    if not _ACME_PAYLOAD_RE.fullmatch(payload):
        raise ProtocolError(f"Payload for '{name_text}' has illegal base64url bytes")
    return AcmeChallenge(name, payload)


def encode_challenges(challenges: Iterable[AcmeChallenge]) -> bytes:
    """Each challenge: name length byte, wire name, 43-byte payload, NUL (as gdnsdctl sends)."""
    out = bytearray()
    for challenge in challenges:
        out.append(len(challenge.name))
        out += challenge.name
        out += challenge.payload
        out.append(0)
    return bytes(out)


def decode_challenges(count: int, data: bytes) -> list[AcmeChallenge]:
    """Inverse of encode_challenges; the data must hold exactly ``count`` challenges.

    Stricter than gdnsd, which serves whatever 43 bytes follow a name: a
    payload must be base64url and end in its NUL, as gdnsdctl sends it, so
    that no client puts arbitrary bytes into our TXT answers.
    """
    found: list[AcmeChallenge] = []
    pos = 0
    while pos < len(data):
        if len(found) >= count:
            raise ProtocolError(f"challenge data holds more than the {count} announced")
        name_len = data[pos]
        end = pos + 1 + name_len + ACME_PAYLOAD_LEN + 1
        if end > len(data):
            raise ProtocolError("challenge data is truncated")
        name = data[pos + 1 : pos + 1 + name_len]
        payload = data[pos + 1 + name_len : end - 1]
        if data[end - 1] != 0:
            raise ProtocolError("challenge payload is not NUL-terminated")
        if not _is_wire_name(name):
            raise ProtocolError(f"challenge name {name!r} is not a wire-format name")
        found.append(AcmeChallenge(names.lower(name), payload))
        pos = end
    if len(found) != count:
        raise ProtocolError(f"challenge data holds {len(found)} challenges, {count} announced")
    return found


def _is_wire_name(name: bytes) -> bool:
    if not 1 <= len(name) <= names.MAX_NAME:
        return False
    pos = 0
    while pos < len(name):
        label_len = name[pos]
        if label_len == 0:
            return pos == len(name) - 1
        if label_len > names.MAX_LABEL:
            return False
        pos += 1 + label_len
    return False


@dataclass(frozen=True)
class ChallengeBatch:
    """Challenges added together (one REQ_CHAL), which expire together.

    ``remaining``: whole seconds left before they expire, as REQ_TAK2 hands
    them over (0 would mean "a full acme_challenge_ttl" to gdnsd, so a batch
    is only handed over with at least one second left).
    """

    remaining: int
    challenges: tuple[AcmeChallenge, ...]


# Before each batch in a REQ_TAK2 answer: its data length, its remaining
# seconds (both 16 bits, host order) and its challenge count (gdnsd 3.8.1's
# layout, captured from it: tests/test_control_protocol.py).
_BATCH_HEAD = struct.Struct("=HHB")


def encode_challenge_handoff(batches: Iterable[ChallengeBatch]) -> bytes:
    """The data of a REQ_TAK2 answer (``v``: the number of batches)."""
    out = bytearray()
    for batch in batches:
        if not 0 < len(batch.challenges) <= ACME_MAX_PER_GDNSDCTL or not 0 < batch.remaining <= 0xFFFF:
            raise ProtocolError(
                f"cannot hand over a batch of {len(batch.challenges)} challenges with {batch.remaining}s left"
            )
        data = encode_challenges(batch.challenges)
        out += _BATCH_HEAD.pack(len(data), batch.remaining, len(batch.challenges))
        out += data
    return bytes(out)


def decode_challenge_handoff(count: int, data: bytes) -> list[ChallengeBatch]:
    """Inverse of encode_challenge_handoff: exactly ``count`` batches."""
    batches: list[ChallengeBatch] = []
    pos = 0
    while pos < len(data):
        if len(batches) >= count:
            raise ProtocolError(f"challenge hand-off holds more than the {count} batches announced")
        if pos + _BATCH_HEAD.size > len(data):
            raise ProtocolError("challenge hand-off is truncated")
        size, remaining, items = _BATCH_HEAD.unpack_from(data, pos)
        pos += _BATCH_HEAD.size
        if not 0 < items <= ACME_MAX_PER_GDNSDCTL:
            # gdnsd makes one batch per REQ_CHAL (1-100); nor could we hand more on.
            raise ProtocolError(f"challenge hand-off has a batch of {items} challenges (1-{ACME_MAX_PER_GDNSDCTL})")
        if pos + size > len(data):
            raise ProtocolError("challenge hand-off is truncated")
        batches.append(ChallengeBatch(remaining, tuple(decode_challenges(items, data[pos : pos + size]))))
        pos += size
    if len(batches) != count:
        raise ProtocolError(f"challenge hand-off holds {len(batches)} batches, {count} announced")
    return batches


# --- takeover stats handoff -------------------------------------------------

_COUNTER = struct.Struct("=Q")


def stats_handoff(counters: Sequence[int]) -> Message:
    """PSH_SHAND: the old daemon's final counters as 64-bit host-order integers."""
    data = b"".join(_COUNTER.pack(value & 0xFFFFFFFFFFFFFFFF) for value in counters)
    return Message(Header(PSH_SHAND, d=len(data)), data)


def decode_stats_handoff(data: bytes) -> list[int]:
    if len(data) % _COUNTER.size:
        raise ProtocolError(f"stats handoff of {len(data)} bytes is not a multiple of 8")
    return [value for (value,) in _COUNTER.iter_unpack(data)]


# --- incremental framing ----------------------------------------------------


class RequestReader:
    """Turns a server's received byte stream into requests.

    ``feed`` bytes as they arrive, then take requests with ``next_request``
    until it returns None. A ProtocolError means the stream is unusable.

    ``payloads=False`` frames every request as a bare header, REQ_CHAL too:
    that is how gdnsd reads a listener that denies challenges (the data of a
    denied REQ_CHAL is read as further headers), and it means such a
    listener never buffers more than one header per client.
    """

    def __init__(self, payloads: bool = True) -> None:
        self._buffer = bytearray()
        self._header: Header | None = None
        self._need = 0
        self._payloads = payloads

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def mid_header(self) -> bool:
        """Part of a header is buffered (and no request is complete, once next_request gave None)."""
        return self._header is None and 0 < len(self._buffer) < HEADER_SIZE

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_BUFFERED:
            raise ProtocolError("client sent more data than any request can hold")

    def next_request(self) -> Request | None:
        if self._header is None:
            if len(self._buffer) < HEADER_SIZE:
                return None
            header = decode_header(bytes(self._buffer[:HEADER_SIZE]))
            del self._buffer[:HEADER_SIZE]
            self._need = request_payload_length(header) if self._payloads else 0
            self._header = header
        if len(self._buffer) < self._need:
            return None
        payload = bytes(self._buffer[: self._need])
        del self._buffer[: self._need]
        request = Request(self._header, payload)
        self._header = None
        self._need = 0
        return request
