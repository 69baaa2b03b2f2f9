"""Reading a query: its header, its one question, and its EDNS request.

``Responder.respond`` recognises the shape nearly every query has (what
resolvers and dnsperf send) in a few byte comparisons of its own, on the
per-packet path. ``parse`` reads any other query, and says through
``QueryProblem`` which error response (or none) it gets, following what
gdnsd 3.8.1 does (docs/gdnsd-behaviour.md, "FORMERR").
"""

from __future__ import annotations

import struct

from pygdnsd.engine import dso, edns, lookup
from pygdnsd.engine.edns import EdnsFormatError, EdnsRequest
from pygdnsd.zones import model, names

# The extended rcode of a query whose OPT asks for an EDNS version above 0.
BADVERS = 16

_RR_FIXED = struct.Struct("!HHIH")

# Lowercases a name's letters: names are matched and cached in lowercase.
LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


class QueryProblem(Exception):
    """The query gets a response without an answer (or none): an error, or a cookie-only NOERROR."""

    def __init__(
        self,
        rcode: int | None,
        with_question: bool = False,
        request: EdnsRequest | None = None,
        bad_cookie: bool = False,
        header_only: bool = False,
        dso_protocol_error: bool = False,
    ) -> None:
        super().__init__(rcode)
        self.rcode = rcode  # None: send nothing
        self.with_question = with_question
        self.edns = request  # answer with an OPT record when the query had a usable one
        self.bad_cookie = bad_cookie
        # A DSO message that is not a session request: a bare header, no OPT (gdnsd).
        self.header_only = header_only
        # An edns-tcp-keepalive option inside a DSO session (RFC 8490 7.1.2): no
        # answer, and the connection is aborted.
        self.dso_protocol_error = dso_protocol_error


def question_end(query: bytes, pos: int) -> int | None:
    """Offset just past the question starting at ``pos``, or None if it is malformed."""
    n = len(query)
    start = pos
    while True:
        if pos >= n:
            return None
        length = query[pos]
        if length == 0:
            break
        if length > 63:
            return None
        pos += length + 1
    pos += 1
    if pos - start > names.MAX_NAME or pos + 4 > n:
        return None
    return pos + 4


def parse(
    query: bytes,
    with_subnet: bool,
    with_cookies: bool,
    with_dso: bool = True,
    in_dso_session: bool = False,
) -> tuple[int, EdnsRequest | None]:
    """Check a query's header and question; return the question's end and its EDNS request.

    Raises ``QueryProblem`` for a query that gets no answer, saying which
    responses echo the question and carry an OPT record. As gdnsd, every
    question and record is read first (a malformed one: FORMERR; an
    edns-tcp-keepalive option ``in_dso_session``: a protocol error), then
    the EDNS version (BADVERS), the opcode (NOTIMP), the question count.
    ``with_subnet``/``with_cookies``: see ``edns.parse_opt``.

    The DSO opcode (``with_dso``, unless ``disable_tcp_dso``) reaches here
    over UDP or with records: FORMERR, a bare header (RFC 8490 5.1, 5.4);
    a TCP session request goes to ``dso.answer`` instead. Without DSO it is
    an opcode like any other: NOTIMP.
    """
    if len(query) < 12 or query[2] & 0x80:
        raise QueryProblem(None)
    opcode = (query[2] >> 3) & 0x0F
    qdcount = (query[4] << 8) | query[5]
    qend = pos = 12
    if qdcount:
        end = question_end(query, 12)
        if end is None:
            raise QueryProblem(lookup.RCODE_FORMERR)
        qend = pos = end
        for _ in range(qdcount - 1):
            end = question_end(query, pos)
            if end is None:
                raise QueryProblem(lookup.RCODE_FORMERR, True)
            pos = end
    with_question = qdcount > 0
    request = None
    if len(query) != pos or query[6:12] != b"\x00\x00\x00\x00\x00\x00":
        try:
            request = _parse_additional(query, pos, with_subnet, with_cookies)
        except EdnsFormatError as bad:
            if in_dso_session and bad.request is not None and bad.request.keepalive:
                # gdnsd stops at the keepalive option, before the malformed one.
                raise QueryProblem(None, request=bad.request, dso_protocol_error=True) from None
            raise QueryProblem(lookup.RCODE_FORMERR, with_question, bad.request, bad.cookie) from None
        except QueryProblem:
            raise QueryProblem(lookup.RCODE_FORMERR, with_question) from None
    if request is not None:
        if in_dso_session and request.keepalive:
            raise QueryProblem(None, request=request, dso_protocol_error=True)
        if request.version != 0:
            raise QueryProblem(BADVERS, with_question, request)
    if opcode == dso.OPCODE and with_dso:
        raise QueryProblem(lookup.RCODE_FORMERR, request=request, header_only=True)
    if opcode != 0:
        raise QueryProblem(lookup.RCODE_NOTIMP, with_question, request)
    if qdcount == 1:
        return qend, request
    if qdcount == 0 and request is not None and request.cookie is not None:
        # RFC 7873 section 5.4: a query with only a cookie gets a NOERROR
        # carrying our server cookie (gdnsd: whatever the cookie's state).
        raise QueryProblem(lookup.RCODE_NOERROR, False, request)
    raise QueryProblem(lookup.RCODE_FORMERR, with_question, request)


def _skip_name(query: bytes, pos: int) -> int:
    n = len(query)
    while True:
        if pos >= n:
            raise QueryProblem(lookup.RCODE_FORMERR, True)
        length = query[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length > 63:
            raise QueryProblem(lookup.RCODE_FORMERR, True)
        pos += length + 1


def _parse_additional(query: bytes, pos: int, with_subnet: bool, with_cookies: bool) -> EdnsRequest | None:
    """Skip answer and authority records; find the OPT record among the additional ones.

    An OPT-typed record in the answer or authority section, or with an owner
    other than the root, is not EDNS and is skipped like any other record.
    """
    an, ns, ar = struct.unpack_from("!HHH", query, 6)
    found: EdnsRequest | None = None
    n = len(query)
    for index in range(an + ns + ar):
        owner_at = pos
        pos = _skip_name(query, pos)
        if pos + 10 > n:
            raise QueryProblem(lookup.RCODE_FORMERR, True)
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(query, pos)
        pos += 10
        is_opt = rtype == model.OPT and index >= an + ns and query[owner_at] == 0
        if pos + rdlength > n:
            if is_opt:
                # gdnsd still answers with an OPT once the OPT's fixed fields are there.
                version = (ttl >> 16) & 0xFF
                partial = EdnsRequest(max(rclass, 512), version, bool(ttl & 0x8000))
                raise EdnsFormatError("OPT rdata runs past the end of the query", request=partial)
            raise QueryProblem(lookup.RCODE_FORMERR, True)
        if is_opt:
            if found is not None:
                raise EdnsFormatError("two OPT records", request=found)
            found = edns.parse_opt(rclass, ttl, query[pos : pos + rdlength], with_subnet, with_cookies)
        pos += rdlength
    return found
