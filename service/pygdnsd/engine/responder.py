"""The engine's entry point: one DNS query's bytes in, the response's bytes out.

Transports call ``Responder.respond`` and send what it returns (or nothing,
for ``None``). It never touches a socket or global state, so it is tested by
feeding it bytes.

Speed comes from answering out of prebuilt bytes. A response is
``header + question (copied from the query, so its case is echoed) + tail
[+ OPT]``; the tail (answer, authority and additional sections, compressed
against the question) depends only on *where* the name falls in the zone
and on the question's layout, so it is built once and cached:

* ``by_question``: lowercased qname + qtype -> prepared tail, for repeated
  questions (the common case); bounded, each of its parts (``_PARTS``)
  cleared when full.
* ``by_tail``: (decision content, the question suffixes the tail may point
  at and where they sit) -> prepared tail. Questions that reach the same
  records share a tail unless compression makes them differ: every A answer
  of an RRset shares one, and a flood of random names in a zone shares a few
  NXDOMAIN tails, so neither rebuilds a response.

Both caches belong to one ``ZoneSet`` and are replaced with it, so nothing
precomputed outlives a reload.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pygdnsd.engine import edns, lookup
from pygdnsd.engine.edns import ClientSubnet, EdnsFormatError, EdnsRequest
from pygdnsd.engine.lookup import Decision, Record
from pygdnsd.engine.stats import Stats
from pygdnsd.engine.wire import COMPRESSED_TYPES, SectionWriter
from pygdnsd.monitoring.sttl import clamp_ttl
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.result import ClientSubnet as PluginSubnet
from pygdnsd.zones import model, names
from pygdnsd.zones.model import DynamicRRset, RRset, Zone, ZoneSet

_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_COUNTS = struct.Struct("!HHHH")
_RR_FIXED = struct.Struct("!HHIH")

# Query types gdnsd refuses to serve with NOTIMP (zone transfers, obsolete
# mail types, transaction security).
_NOTIMP_QTYPES = frozenset({model.AXFR, model.IXFR, model.MAILA, model.MAILB, model.TSIG, model.TKEY})

_AA = 0x04
_TC = 0x02
_RCODE_NAMES = {
    lookup.RCODE_NOERROR: "noerror",
    lookup.RCODE_FORMERR: "formerr",
    lookup.RCODE_NXDOMAIN: "nxdomain",
    lookup.RCODE_NOTIMP: "notimp",
    lookup.RCODE_REFUSED: "refused",
    16: "badvers",
}
_BADVERS = 16
_OPCODE_DSO = 6

# A/AAAA RRsets are rotated from one response to the next, as gdnsd shuffles
# them: every record of a set comes first in turn. Rotations are prebuilt, up
# to this many (a bound on memory for absurdly large sets).
_MAX_ROTATIONS = 256
_MAX_CACHED_QUESTIONS = 200_000


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The config options that shape answers (see ``man gdnsd.config``)."""

    chaos_response: bytes = b"gdnsd/3"
    nsid: bytes | None = None
    max_edns_response: int = 1232
    max_edns_response_v6: int = 1232
    experimental_no_chain: bool = True
    edns_client_subnet: bool = True
    disable_cookies: bool = False
    max_nocookie_response: int = 0
    # Value of the edns-tcp-keepalive option we send, in units of 100 ms.
    tcp_keepalive: int = 370
    tcp_pad: bool = False
    # 32-byte secret for server cookies; the daemon loads or creates it.
    cookie_secret: bytes = b"\x00" * 32


# A response minus its header's ID and RD bit, its question and OPT:
# (flags: the AA bit of header byte 2, rcode, answer, authority and
# additional counts, scope: the client-subnet scope to echo, set by dynamic
# answers, tails: one tail per A/AAAA rotation laid end to end (rotations
# have the same length), turns: how many rotations).
#
# Flat, and only atoms, for the cyclic garbage collector: it stops tracking
# an exact tuple of atoms at the first collection that sees it, whereas a
# tuple holding tuples may be looked at before its items and so stays
# tracked into older generations (a tuple subclass, such as a NamedTuple,
# is never untracked). Cache entries built for first-seen questions then
# piled up there, and each gen-1/gen-2 collection walked thousands of them:
# pauses of 1-10 ms, most of pygdnsd's p99 latency. The caches' keys are
# flat tuples of atoms for the same reason (``_tail_key``, ``Decision.signature``).
Prepared = tuple[int, int, int, int, int, int, bytes, int]


# Bounds the memory of whole responses: about 300 bytes each, so at most
# ~60 MB per client family; cleared when full, like the question cache.
_MAX_REMEMBERED = 200_000


def prepared(flags: int, rcode: int, counts: tuple[int, int, int], tails: list[bytes], scope: int = 0) -> Prepared:
    an, ns, ar = counts
    return (flags, rcode, an, ns, ar, scope, b"".join(tails), len(tails))


def _tail(prepared: Prepared, rotation: int) -> bytes:
    """Rotation number ``rotation`` (modulo how many there are) of a prepared answer's tail."""
    tails, turns = prepared[6], prepared[7]
    if turns == 1:
        return tails
    size = len(tails) // turns
    at = rotation % turns * size
    return tails[at : at + size]


class DynamicSource(Protocol):
    """The resolver plugins behind DYNA/DYNC (``pygdnsd.plugins.registry.Resolvers``)."""

    def resolve(self, plugin: str, resource: str, client: ClientInfo) -> DynamicResult: ...


class _QueryProblem(Exception):
    """The query gets an error response (or none) instead of an answer."""

    def __init__(
        self,
        rcode: int | None,
        with_question: bool = False,
        request: EdnsRequest | None = None,
        bad_cookie: bool = False,
    ) -> None:
        super().__init__(rcode)
        self.rcode = rcode  # None: send nothing
        self.with_question = with_question
        self.edns = request  # answer with an OPT record when the query had a usable one
        self.bad_cookie = bad_cookie


# Every cache is split into _PARTS dicts by key hash. A dict grows by copying
# itself whole, and a full cache is emptied by freeing every entry: at
# 100,000-200,000 entries either stalled every query for 5-20 ms (measured),
# and a part does 1/_PARTS of that work at a time. Bounds apply per part.
_PARTS = 64
_PART_MASK = _PARTS - 1

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Parts = list[dict[K, V]]


def _parts(make: Callable[[], dict[K, V]]) -> Parts[K, V]:
    return [make() for _ in range(_PARTS)]


def _keep(parts: Parts[K, V], key: K, value: V, bound: int) -> None:
    """Cache ``value`` under ``key``, first emptying its part if that holds its share of ``bound``."""
    part = parts[hash(key) & _PART_MASK]
    if len(part) >= max(bound // _PARTS, 1):
        part.clear()
    part[key] = value


def _frozen_with_the_zones() -> dict[Any, Any]:
    """An empty cache that the freeze after loading (``daemon.gc_freeze``) exempts from collections.

    A dict holding only atoms is not tracked by the collector (an empty one
    from the start; a full collection untracks one), so ``gc.freeze`` would
    miss it, and the first tuple cached in it would track it as a young
    object: every later full collection then walked its hundreds of
    thousands of entries (measured: 30-90 ms stalls while the caches fill).
    This one holds a list under ``None``, a key no query's key equals, so it
    stays tracked until frozen, and frozen, it stays out of collections
    however it fills or is cleared.
    """
    return {None: []}


class _Generation:
    """A ZoneSet with the caches built from it; replaced as a whole on reload."""

    __slots__ = ("answers_v4", "answers_v6", "by_question", "by_rrset", "by_tail", "layouts", "zones")

    def __init__(self, zones: ZoneSet) -> None:
        self.zones = zones
        # Each cache is a list of parts (see ``_PARTS``): key ``k`` lives in
        # part ``hash(k) & _PART_MASK``.
        # Tuple-valued caches: see ``_frozen_with_the_zones``.
        # Lowercased qname + qtype -> Prepared.
        self.by_question: Parts[bytes, Prepared] = _parts(_frozen_with_the_zones)
        # ``_tail_key`` -> Prepared.
        self.by_tail: Parts[tuple[object, ...], Prepared] = _parts(_frozen_with_the_zones)
        # id(RRset) -> its answer, for RRsets with no names to compress.
        self.by_rrset: Parts[int, Prepared] = _parts(_frozen_with_the_zones)
        # Decision content -> whether any build of its tail pointed into the
        # tail itself (``_INTERNAL``/``_EXTERNAL``), then the names its tail
        # may compress against.
        self.layouts: Parts[tuple[object, ...], tuple[bytes, ...]] = _parts(_frozen_with_the_zones)
        # Whole UDP responses: the query minus its ID -> the response minus
        # its ID (see ``_remember``). Per client family, since IPv4 and IPv6
        # may have different size limits. Bytes only, so the cyclic collector
        # never tracks these dicts (see Prepared).
        self.answers_v4: Parts[bytes, bytes] = _parts(dict)
        self.answers_v6: Parts[bytes, bytes] = _parts(dict)


class Responder:
    """Answers queries from one ``ZoneSet`` (swapped atomically by ``set_zones``)."""

    def __init__(
        self,
        zones: ZoneSet,
        settings: EngineSettings,
        stats: Stats,
        dynamic: DynamicSource | None = None,
    ) -> None:
        self.settings = settings
        self.dynamic = dynamic
        self.stats = stats
        self._generation = _Generation(zones)
        self._rotation = 0
        self._chain = not settings.experimental_no_chain
        self._chaos_tail = self._build_chaos_tail(settings.chaos_response)
        self._udp_limit_v4 = settings.max_edns_response
        self._udp_limit_v6 = settings.max_edns_response_v6
        # Our OPT for option-less queries, indexed by DO (2) | TCP (1) | closing (4).
        self._bare_opts = [
            edns.opt_record(0, bool(index & 2), self._keepalive_option(bool(index & 4)) if index & 1 else b"")
            for index in range(8)
        ]

    @property
    def zones(self) -> ZoneSet:
        return self._generation.zones

    def set_zones(self, zones: ZoneSet) -> None:
        """Serve ``zones`` from the next query on (a single reference swap)."""
        self._generation = _Generation(zones)

    # -- the per-query path -------------------------------------------------

    def respond(self, query: bytes, client_ip: bytes, tcp: bool, closing: bool = False) -> bytes | None:
        """The response to ``query``, or ``None`` when no response must be sent.

        ``client_ip`` is the packed source address (4 or 16 bytes): it selects
        IPv4/IPv6 limits and feeds server cookies. ``tcp`` lifts the UDP size
        limits and enables the edns-tcp-keepalive option. ``closing`` asks for
        a keepalive timeout of 0, telling a TCP client we are about to close.
        """
        counters = self.stats.dns.values
        v6 = len(client_ip) == 16
        if v6:
            counters["v6"] += 1
        # One read: a reload swapping generations mid-query must not let an
        # old generation's answer into the new one's caches.
        generation = self._generation
        if not tcp:
            key = query[2:]
            rest = (generation.answers_v6 if v6 else generation.answers_v4)[hash(key) & _PART_MASK].get(key)
            if rest is not None:
                # Count what building it counted (see ``_remember``).
                counters[_RCODE_NAMES[rest[1]]] += 1
                if query[11]:  # a bare OPT: the fast path's only additional record
                    counters["edns"] += 1
                    if query[-4] & 0x80:
                        counters["edns_do"] += 1
                    if rest[0] & _TC:
                        self.stats.udp.values["tc"] += 1
                        self.stats.udp.values["edns_tc"] += 1
                    elif len(rest) > 510:
                        self.stats.udp.values["edns_big"] += 1
                elif rest[0] & _TC:
                    self.stats.udp.values["tc"] += 1
                return query[:2] + rest
        # Fast path: QR=0, opcode 0, one question, and either nothing after the
        # question or a bare version-0 OPT record (what most resolvers send).
        # Anything else takes the general parser below.
        n = len(query)
        if n > 16 and query[4:6] == b"\x00\x01" and not query[2] & 0xF8:
            pos = 12
            length = query[12]
            while length and length < 64:
                pos += length + 1
                if pos >= n:
                    break
                length = query[pos]
            qend = pos + 5
            if length == 0 and qend - 16 <= 255:
                if n == qend and query[6:12] == b"\x00\x00\x00\x00\x00\x00":
                    edns = False
                elif (
                    n == qend + 11
                    and query[6:12] == b"\x00\x00\x00\x00\x00\x01"
                    and query[qend : qend + 3] == b"\x00\x00\x29"
                    and query[qend + 6] == 0
                    and query[qend + 9 : qend + 11] == b"\x00\x00"
                ):
                    edns = True
                else:
                    edns = None
                if edns is not None:
                    prepared = self._shared(generation, query, qend)
                    if prepared is None:
                        # Built for this query (maybe a plugin's answer): never remembered whole.
                        prepared = self._unshared(generation, query, qend, client_ip, None)
                        if edns:
                            return self._assemble_bare_edns(query, qend, prepared, client_ip, tcp, closing)
                        return self._assemble(query, qend, prepared, None, client_ip, tcp, closing)
                    if edns:
                        response = self._assemble_bare_edns(query, qend, prepared, client_ip, tcp, closing)
                    else:
                        response = self._assemble(query, qend, prepared, None, client_ip, tcp, closing)
                    if not tcp and prepared[7] == 1:
                        _remember(generation, query, qend, response, v6)
                    return response
        try:
            qend, edns_req = _parse(query, tcp, self.settings.edns_client_subnet)
        except _QueryProblem as problem:
            if problem.bad_cookie:
                counters["edns_cookie_formerr"] += 1
            return self._error(query, problem, client_ip, tcp, closing)
        subnet = edns_req.client_subnet if edns_req is not None else None
        prepared = self._lookup(generation, query, qend, client_ip, subnet)
        return self._assemble(query, qend, prepared, edns_req, client_ip, tcp, closing)

    def _shared(self, generation: _Generation, query: bytes, qend: int) -> Prepared | None:
        """The question's tail if every client gets the same one (cached, CHAOS, REFUSED); else None."""
        qtc = query[qend - 4 : qend]
        qclass = (qtc[2] << 8) | qtc[3]
        if qclass == model.CLASS_IN or qclass == model.CLASS_ANY:
            key = query[12 : qend - 4].translate(_LOWER) + qtc[:2]
            return generation.by_question[hash(key) & _PART_MASK].get(key)
        if qclass == model.CLASS_CH:
            return self._chaos_tail
        return _REFUSED

    def _lookup(
        self, generation: _Generation, query: bytes, qend: int, client_ip: bytes, subnet: ClientSubnet | None
    ) -> Prepared:
        """The prepared tail answering the (well-formed) question ending at ``qend``."""
        prepared = self._shared(generation, query, qend)
        if prepared is not None:
            return prepared
        return self._unshared(generation, query, qend, client_ip, subnet)

    def _unshared(
        self, generation: _Generation, query: bytes, qend: int, client_ip: bytes, subnet: ClientSubnet | None
    ) -> Prepared:
        """``_lookup`` once ``_shared`` found nothing: the question's first time, or a plugin's answer."""
        qtype = (query[qend - 4] << 8) | query[qend - 3]
        if qtype in _NOTIMP_QTYPES:
            return _NOTIMP
        lname = query[12 : qend - 4].translate(_LOWER)
        return self._prepare(generation, lname, qtype, client_ip, subnet)

    def _assemble_bare_edns(
        self, query: bytes, qend: int, prepared: Prepared, client_ip: bytes, tcp: bool, closing: bool
    ) -> bytes:
        """``_assemble`` for a query whose OPT has no options: our OPT is prebuilt."""
        do = query[qend + 7] & 0x80
        counters = self.stats.dns.values
        counters["edns"] += 1
        if do:
            counters["edns_do"] += 1
        if tcp and self.settings.tcp_pad:
            request = EdnsRequest(512, 0, bool(do))
            return self._assemble(query, qend, prepared, request, client_ip, tcp, closing, counted=True)
        opt = self._bare_opts[(2 if do else 0) | (1 if tcp else 0) | (4 if closing else 0)]
        flags, rcode, an, ns, ar, _scope, tail, turns = prepared
        if turns != 1:
            self._rotation += 1
            tail = _tail(prepared, self._rotation)
        counters[_RCODE_NAMES[rcode]] += 1
        flags2 = 0x80 | flags | (query[2] & 0x01)
        question = query[12:qend]
        if not tcp:
            udp_size = (query[qend + 3] << 8) | query[qend + 4]
            limit = self._udp_limit_v6 if len(client_ip) == 16 else self._udp_limit_v4
            if udp_size < limit:
                limit = udp_size if udp_size > 512 else 512
            if self.settings.max_nocookie_response and self.settings.max_nocookie_response < limit:
                limit = self.settings.max_nocookie_response
            size = qend + len(tail) + len(opt)
            if size > limit:
                self.stats.udp.bump("tc")
                self.stats.udp.bump("edns_tc")
                return b"".join(
                    (query[:2], bytes((flags2 | _TC, rcode)), _COUNTS.pack(1, 0, 0, 1), question, opt)
                )
            if size > 512:
                self.stats.udp.bump("edns_big")
        return b"".join((query[:2], bytes((flags2, rcode)), _COUNTS.pack(1, an, ns, ar + 1), question, tail, opt))

    def _assemble(
        self,
        query: bytes,
        qend: int,
        prepared: Prepared,
        edns_req: EdnsRequest | None,
        client_ip: bytes,
        tcp: bool,
        closing: bool,
        counted: bool = False,
    ) -> bytes:
        flags, rcode, an, ns, ar, scope, tail, turns = prepared
        if turns != 1:
            self._rotation += 1
            tail = _tail(prepared, self._rotation)
        counters = self.stats.dns.values
        counters[_RCODE_NAMES[rcode]] += 1
        flags2 = 0x80 | flags | (query[2] & 0x01)
        question = query[12:qend]
        if edns_req is None:
            response = b"".join(
                (query[:2], bytes((flags2, rcode)), _COUNTS.pack(1, an, ns, ar), question, tail)
            )
            limit = 512
            nocookie = self.settings.max_nocookie_response
            if nocookie and nocookie < limit:
                limit = nocookie
            if not tcp and len(response) > limit:
                self.stats.udp.bump("tc")
                return b"".join(
                    (query[:2], bytes((flags2 | _TC, rcode)), _COUNTS.pack(1, 0, 0, 0), question)
                )
            return response
        if not counted:
            counters["edns"] += 1
            if edns_req.do:
                counters["edns_do"] += 1
        options, cookie_ok = self._response_options(edns_req, client_ip, tcp, closing, scope)
        head = (query[:2], bytes((flags2, rcode)))
        body_len = 12 + len(question) + len(tail) + 11 + len(options)
        if tcp and self.settings.tcp_pad:
            options += edns.padding_option(body_len)
        opt = edns.opt_record(0, edns_req.do, options)
        if not tcp:
            limit = min(
                edns_req.udp_size,
                self.settings.max_edns_response_v6 if len(client_ip) == 16 else self.settings.max_edns_response,
            )
            nocookie = self.settings.max_nocookie_response
            if nocookie and not cookie_ok and nocookie < limit:
                limit = nocookie
            if body_len > limit:
                self.stats.udp.bump("tc")
                self.stats.udp.bump("edns_tc")
                return b"".join((*head[:1], bytes((flags2 | _TC, rcode)), _COUNTS.pack(1, 0, 0, 1), question, opt))
            if body_len > 512:
                self.stats.udp.bump("edns_big")
        return b"".join((*head, _COUNTS.pack(1, an, ns, ar + 1), question, tail, opt))

    def _response_options(
        self, edns_req: EdnsRequest, client_ip: bytes, tcp: bool, closing: bool, scope: int = 0
    ) -> tuple[bytes, bool]:
        """Our OPT's options for this query, and whether it carried a valid server cookie."""
        settings = self.settings
        # gdnsd's option order: client subnet, cookie, keepalive, NSID.
        parts = []
        cookie_ok = False
        counters = self.stats.dns.values
        subnet = edns_req.client_subnet
        if subnet is not None:
            counters["edns_clientsub"] += 1
            data = struct.pack("!HBB", subnet.family, subnet.source_prefix, scope) + subnet.address
            parts.append(edns.option(edns.OPT_CLIENT_SUBNET, data))
        if edns_req.cookie is not None and not settings.disable_cookies:
            client_cookie = edns_req.cookie[:8]
            ours = edns.server_cookie(settings.cookie_secret, client_cookie, client_ip)
            if len(edns_req.cookie) == 8:
                counters["edns_cookie_init"] += 1
            elif edns_req.cookie[8:] == ours:
                counters["edns_cookie_ok"] += 1
                cookie_ok = True
            else:
                counters["edns_cookie_bad"] += 1
            parts.append(edns.option(edns.OPT_COOKIE, client_cookie + ours))
        if tcp:
            parts.append(self._keepalive_option(closing))
        if edns_req.nsid and settings.nsid is not None:
            parts.append(edns.option(edns.OPT_NSID, settings.nsid))
        return b"".join(parts), cookie_ok

    def _keepalive_option(self, closing: bool) -> bytes:
        """edns-tcp-keepalive: our idle timeout, or 0 to ask a client to close (RFC 7828)."""
        keepalive = 0 if closing else self.settings.tcp_keepalive
        return edns.option(edns.OPT_KEEPALIVE, struct.pack("!H", keepalive))

    def _error(
        self, query: bytes, problem: _QueryProblem, client_ip: bytes, tcp: bool, closing: bool
    ) -> bytes | None:
        counters = self.stats.dns.values
        if problem.rcode is None:
            counters["dropped"] += 1
            return None
        rcode = problem.rcode
        counters[_RCODE_NAMES.get(rcode, "formerr")] += 1
        question = b""
        if problem.with_question:
            qend = _question_end(query, 12)
            if qend is not None:
                question = query[12:qend]
        flags2 = 0x80 | (query[2] & 0x79)  # echo opcode and RD
        head = query[:2] + bytes((flags2, rcode & 0x0F))
        qdcount = 1 if question else 0
        edns_req = problem.edns
        if edns_req is None:
            return head + _COUNTS.pack(qdcount, 0, 0, 0) + question
        counters["edns"] += 1
        if rcode == _BADVERS:
            # gdnsd sends no NSID or cookie with BADVERS, only the TCP keepalive.
            options = self._keepalive_option(closing) if tcp else b""
        else:
            options, _ = self._response_options(edns_req, client_ip, tcp, closing)
        if tcp and self.settings.tcp_pad:
            # gdnsd pads every TCP answer carrying an OPT, errors included.
            options += edns.padding_option(12 + len(question) + 11 + len(options))
        opt = edns.opt_record(rcode >> 4, edns_req.do, options)
        return head + _COUNTS.pack(qdcount, 0, 0, 1) + question + opt

    # -- building and caching tails ----------------------------------------

    def _prepare(
        self, generation: _Generation, lname: bytes, qtype: int, client_ip: bytes, subnet: ClientSubnet | None
    ) -> Prepared:
        zones = generation.zones
        zone = zones.find_zone(lname)
        if zone is None:
            prepared = _REFUSED
        else:
            where = lookup.locate(zone, lname)
            record = lookup.dynamic_at(where, qtype)
            if record is not None:
                # Plugin answers depend on monitor states, the client and chance
                # (weighted): built for this query only, never cached.
                client = ClientInfo(client_ip, _plugin_subnet(subnet))
                return self._prepare_dynamic(generation, where, lname, qtype, record, client)
            prepared = self._prepare_static(generation, where, lname, qtype)
        _keep(generation.by_question, lname + bytes((qtype >> 8, qtype & 0xFF)), prepared, _MAX_CACHED_QUESTIONS)
        return prepared

    def _prepare_static(
        self, generation: _Generation, where: lookup.Location, lname: bytes, qtype: int
    ) -> Prepared:
        """The shared tail for this decision and this question's layout (see the module doc)."""
        if where.kind == "node" or where.kind == "wildcard":
            rrset = where.node.get(qtype)
            if rrset is not None and rrset.rtype not in COMPRESSED_TYPES:
                # The common answer: one RRset, owner the question, nothing to
                # compress, so one tail serves every name holding this RRset.
                part = generation.by_rrset[hash(id(rrset)) & _PART_MASK]
                prepared = part.get(id(rrset))
                if prepared is None:
                    prepared = part[id(rrset)] = _plain_answer(rrset)
                return prepared
        decision = lookup.decide_at(generation.zones, where, qtype, self._chain)
        content = decision.signature()
        layouts = generation.layouts[hash(content) & _PART_MASK]
        layout = layouts.get(content)
        if layout is not None:
            key = _tail_key(content, lname, layout)
            prepared = generation.by_tail[hash(key) & _PART_MASK].get(key)
            if prepared is not None:
                return prepared
        prepared, built_wanted, internal = _build(decision, lname, 16 + len(lname))
        if layout is not None:
            built_wanted = built_wanted.union(layout[1:])
            internal = internal or layout[0] == _INTERNAL
        # A flat tuple of bytes (see Prepared): a set, or a tuple holding one, stays tracked.
        layout = (_INTERNAL if internal else _EXTERNAL, *built_wanted)
        layouts[content] = layout
        _keep(generation.by_tail, _tail_key(content, lname, layout), prepared, _MAX_CACHED_QUESTIONS)
        return prepared

    def _prepare_dynamic(
        self,
        generation: _Generation,
        where: lookup.Location,
        lname: bytes,
        qtype: int,
        record: DynamicRRset,
        client: ClientInfo,
    ) -> Prepared:
        scope = 0

        def resolve(found: DynamicRRset, zone: Zone, asked: int) -> RRset | None:
            nonlocal scope
            if self.dynamic is None:
                return None
            result = self.dynamic.resolve(found.plugin, found.resource, client)
            scope = result.scope
            return dynamic_rrset(result, found, zone, asked)

        decision = lookup.decide_at(generation.zones, where, qtype, self._chain, resolve)
        built, _, _ = _build(decision, lname, 16 + len(lname))
        if not scope:
            return built
        flags, rcode, an, ns, ar, _, tails, turns = built
        return (flags, rcode, an, ns, ar, scope, tails, turns)

    def _build_chaos_tail(self, text: bytes) -> Prepared:
        writer = SectionWriter(0, {})
        writer.pointer(12)
        writer.out += _RR_FIXED.pack(model.TXT, model.CLASS_CH, 0, len(text) + 1)
        writer.out += bytes((len(text),)) + text
        return prepared(0, lookup.RCODE_NOERROR, (1, 0, 0), [writer.getvalue()])


def _remember(generation: _Generation, query: bytes, qend: int, response: bytes, v6: bool) -> None:
    """Keep a fast-path UDP response for the same query bytes (from any ID).

    Only for answers every client gets alike: a tail shared through the
    generation's caches and not rotated. Serving it again counts what
    building it counted, read back from the query and response bytes (the
    rcode, TC, size; EDNS and DO from the query). Names with capitals are
    left out: resolvers that randomise case (0x20) make every such query
    unique, and remembering them would only churn the memory.
    """
    if query[12:qend].translate(_LOWER) != query[12:qend]:
        return
    _keep(generation.answers_v6 if v6 else generation.answers_v4, query[2:], response[2:], _MAX_REMEMBERED)


def _tail_key(content: tuple[object, ...], qname: bytes, layout: tuple[bytes, ...]) -> tuple[object, ...]:
    """What a tail of ``content`` depends on for this qname (flat, see Prepared).

    ``layout`` is ``_INTERNAL`` or ``_EXTERNAL`` then the names the tail
    may compress against. Compression can only point at question suffixes
    among those, so they (and their offsets) are part of the key; pointers
    into the tail itself move with the question's length, which then joins
    the key too. ``content`` has its own lengths, so the key reads back
    unambiguously: content, the length or -1, then (suffix, offset) pairs.
    """
    key: list[object] = [*content, len(qname) if layout[0] == _INTERNAL else -1]
    pos = 0
    while qname[pos]:
        suffix = qname[pos:]
        if suffix in layout:
            key += (suffix, pos)
        pos += qname[pos] + 1
    return tuple(key)


def _build(decision: Decision, qname: bytes, tail_at: int) -> tuple[Prepared, frozenset[bytes], bool]:
    """Encode a decision's sections, compressing against the question name.

    ``tail_at`` is where the tail starts in the message. Also returns every
    name the tail could compress against and whether it points into itself.
    A/AAAA RRsets in the answer are prebuilt in every rotation by reordering
    their encoded records (each record's owner is the same pointer).
    """
    known = {qname[pos:]: 12 + pos for pos in names.label_offsets(qname)[:-1]}
    writer = SectionWriter(tail_at, known)
    rotating: list[tuple[int, int, list[bytes]]] = []  # (start, end, records) in writer.out
    for section in (decision.answer, decision.authority, decision.additional):
        for record in section:
            owner: bytes | int = 12 if record.owner == lookup.QNAME else record.owner
            rrset = record.rrset
            start = len(writer.out)
            chunks = []
            for rdata in rrset.rdatas:
                before = len(writer.out)
                writer.record(owner, rrset.rtype, model.CLASS_IN, rrset.ttl, rdata)
                chunks.append(bytes(writer.out[before:]))
                if isinstance(owner, bytes):
                    # Later records of the set point at the first copy of the owner.
                    owner = writer.known.get(owner, owner)
            if (
                section is decision.answer
                and rrset.rtype in (model.A, model.AAAA)
                and len(chunks) > 1
                and chunks[0][0] >= 0xC0  # the owner is a pointer in every record
            ):
                rotating.append((start, len(writer.out), chunks))
    tail = writer.getvalue()
    tails = [tail]
    if rotating:
        turns = min(max(len(chunks) for _, _, chunks in rotating), _MAX_ROTATIONS)
        tails = [_rotation(tail, rotating, turn) for turn in range(turns)]
    counts = (
        _record_count(decision.answer),
        _record_count(decision.authority),
        _record_count(decision.additional),
    )
    flags = _AA if decision.authoritative else 0
    return prepared(flags, decision.rcode, counts, tails), frozenset(writer.wanted), writer.internal


def _plain_answer(rrset: RRset) -> Prepared:
    """The tail answering with ``rrset`` alone, owner a pointer to the question (rotated as usual)."""
    fixed = _RR_FIXED.pack
    chunks = [b"\xc0\x0c" + fixed(rrset.rtype, model.CLASS_IN, rrset.ttl, len(rdata)) + rdata for rdata in rrset.rdatas]
    tail = b"".join(chunks)
    tails = [tail]
    if rrset.rtype in (model.A, model.AAAA) and len(chunks) > 1:
        rotating = [(0, len(tail), chunks)]
        tails = [_rotation(tail, rotating, turn) for turn in range(min(len(chunks), _MAX_ROTATIONS))]
    return prepared(_AA, lookup.RCODE_NOERROR, (len(chunks), 0, 0), tails)


def _rotation(tail: bytes, rotating: list[tuple[int, int, list[bytes]]], turn: int) -> bytes:
    """``tail`` with each rotating RRset's records shifted ``turn`` places."""
    parts = []
    done = 0
    for start, end, chunks in rotating:
        shift = turn % len(chunks)
        parts.append(tail[done:start])
        parts.extend(chunks[shift:] + chunks[:shift])
        done = end
    parts.append(tail[done:])
    return b"".join(parts)


def dynamic_rrset(result: DynamicResult, record: DynamicRRset, zone: Zone, qtype: int) -> RRset | None:
    """What a plugin's result serves for ``qtype``, with the record's MAX/MIN applied to its TTL."""
    ttl = clamp_ttl(result.ttl, record.ttl, record.min_ttl)
    if result.cname is not None:
        target = result.cname + zone.apex if result.cname_relative else result.cname
        return RRset(model.CNAME, ttl, (target,))
    if qtype == model.A and result.v4:
        return RRset(model.A, ttl, result.v4)
    if qtype == model.AAAA and result.v6:
        return RRset(model.AAAA, ttl, result.v6)
    return None


def _plugin_subnet(subnet: ClientSubnet | None) -> PluginSubnet | None:
    """The query's client-subnet option as plugins take it (address zero-filled to full length)."""
    if subnet is None:
        return None
    width = 4 if subnet.family == 1 else 16
    return PluginSubnet(subnet.address.ljust(width, b"\x00"), subnet.source_prefix)


def _record_count(section: tuple[Record, ...]) -> int:
    return sum(len(record.rrset.rdatas) for record in section)


# Markers heading a layout (see ``_Generation.layouts``); never a wire name, which ends in b"\x00".
_INTERNAL = b"internal"
_EXTERNAL = b"external"

_REFUSED = prepared(0, lookup.RCODE_REFUSED, (0, 0, 0), [b""])
_NOTIMP = prepared(0, lookup.RCODE_NOTIMP, (0, 0, 0), [b""])


# -- parsing the query --------------------------------------------------------


def _question_end(query: bytes, pos: int) -> int | None:
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


def _parse(query: bytes, tcp: bool, with_subnet: bool) -> tuple[int, EdnsRequest | None]:
    """Check a query's header and question; return the question's end and its EDNS request.

    Which error responses echo the question and carry an OPT record follows
    what gdnsd 3.8.1 does (docs/gdnsd-behaviour.md, "FORMERR").
    """
    if len(query) < 12 or query[2] & 0x80:
        raise _QueryProblem(None)
    opcode = (query[2] >> 3) & 0x0F
    qdcount = (query[4] << 8) | query[5]
    if opcode == _OPCODE_DSO:
        # DNS Stateful Operations (RFC 8490): not spoken here; gdnsd stays
        # silent on TCP session setup and calls it malformed over UDP.
        raise _QueryProblem(None if tcp and qdcount == 0 else lookup.RCODE_FORMERR)
    if qdcount == 0:
        raise _QueryProblem(lookup.RCODE_FORMERR, False, _edns_or_none(query, 12, with_subnet))
    qend = _question_end(query, 12)
    if qend is None:
        raise _QueryProblem(lookup.RCODE_FORMERR)
    if qdcount > 1:
        pos: int | None = qend
        for _ in range(qdcount - 1):
            pos = _question_end(query, pos) if pos is not None else None
        request = _edns_or_none(query, pos, with_subnet) if pos is not None else None
        raise _QueryProblem(lookup.RCODE_FORMERR, True, request)
    if opcode != 0:
        raise _QueryProblem(lookup.RCODE_NOTIMP, True, _edns_or_none(query, qend, with_subnet))
    if len(query) == qend and query[6:12] == b"\x00\x00\x00\x00\x00\x00":
        return qend, None
    try:
        request = _parse_additional(query, qend, with_subnet)
    except EdnsFormatError as bad:
        raise _QueryProblem(lookup.RCODE_FORMERR, True, bad.request, bad.cookie) from None
    if request is not None and request.version != 0:
        raise _QueryProblem(_BADVERS, True, request)
    return qend, request


def _edns_or_none(query: bytes, pos: int, with_subnet: bool) -> EdnsRequest | None:
    """The query's EDNS request for an error response, if its records parse at all."""
    try:
        return _parse_additional(query, pos, with_subnet)
    except _QueryProblem:
        return None
    except EdnsFormatError as bad:
        return bad.request


def _skip_name(query: bytes, pos: int) -> int:
    n = len(query)
    while True:
        if pos >= n:
            raise _QueryProblem(lookup.RCODE_FORMERR, True)
        length = query[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length > 63:
            raise _QueryProblem(lookup.RCODE_FORMERR, True)
        pos += length + 1


def _parse_additional(query: bytes, pos: int, with_subnet: bool) -> EdnsRequest | None:
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
            raise _QueryProblem(lookup.RCODE_FORMERR, True)
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(query, pos)
        pos += 10
        is_opt = rtype == model.OPT and index >= an + ns and query[owner_at] == 0
        if pos + rdlength > n:
            if is_opt:
                # gdnsd still answers with an OPT once the OPT's fixed fields are there.
                version = (ttl >> 16) & 0xFF
                partial = EdnsRequest(max(rclass, 512), version, bool(ttl & 0x8000))
                raise EdnsFormatError("OPT rdata runs past the end of the query", request=partial)
            raise _QueryProblem(lookup.RCODE_FORMERR, True)
        if is_opt:
            if found is not None:
                raise EdnsFormatError("two OPT records", request=found)
            found = edns.parse_opt(rclass, ttl, query[pos : pos + rdlength], with_subnet)
        pos += rdlength
    return found
