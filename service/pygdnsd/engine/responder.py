"""The engine's entry point: one DNS query's bytes in, the response's bytes out.

Transports call ``Responder.respond`` and send what it returns (or nothing,
for ``None``). It never touches a socket or global state, so it is tested by
feeding it bytes.

Speed comes from answering out of prebuilt bytes: a response is the query's
header and question followed by a prepared tail (``prepared``), found in the
caches of the current ``ZoneSet`` (``answer_cache``) for repeated questions
and for names that reach the same records. The query is read in
``respond`` when it has the usual shape, else by ``query.parse``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from pygdnsd.config.options import Config
from pygdnsd.engine import challenges, edns, lookup
from pygdnsd.engine.answer_cache import (
    EXTERNAL,
    INTERNAL,
    PART_MASK,
    AnswerCache,
    DynamicQuestion,
    tail_key,
)
from pygdnsd.engine.challenges import ChallengeSet, Match
from pygdnsd.engine.edns import ClientSubnet, EdnsRequest
from pygdnsd.engine.prepared import (
    NOTIMP,
    REFUSED,
    ROTATIONS,
    SCOPE,
    TAILS,
    Prepared,
    chaos_answer,
    encode_decision,
    plain_answer,
    rotated_tail,
)
from pygdnsd.engine.query import BADVERS, LOWER, QueryProblem, parse, question_end
from pygdnsd.engine.stats import Stats
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.engine.wire import COMPRESSED_TYPES
from pygdnsd.monitoring.sttl import clamp_ttl
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.result import ClientSubnet as PluginSubnet
from pygdnsd.zones import model
from pygdnsd.zones.model import DynamicRRset, RRset, Zone, ZoneSet

if TYPE_CHECKING:
    from pygdnsd.transport._fastpath import FastAnswers

_COUNTS = struct.Struct("!HHHH")

# Query types gdnsd refuses to serve with NOTIMP (zone transfers, obsolete
# mail types, transaction security).
_NOTIMP_QTYPES = frozenset({model.AXFR, model.IXFR, model.MAILA, model.MAILB, model.TSIG, model.TKEY})

_TC = 0x02
_RCODE_NAMES = {
    lookup.RCODE_NOERROR: "noerror",
    lookup.RCODE_FORMERR: "formerr",
    lookup.RCODE_NXDOMAIN: "nxdomain",
    lookup.RCODE_NOTIMP: "notimp",
    lookup.RCODE_REFUSED: "refused",
    BADVERS: "badvers",
}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The config options that shape answers (see ``man gdnsd.config``).

    ``from_config`` reads them from a config; the defaults are its defaults.
    """

    chaos_response: bytes = Config.chaos_response
    nsid: bytes | None = Config.nsid
    max_edns_response: int = Config.max_edns_response
    max_edns_response_v6: int = Config.max_edns_response_v6
    experimental_no_chain: bool = Config.experimental_no_chain
    edns_client_subnet: bool = Config.edns_client_subnet
    disable_cookies: bool = Config.disable_cookies
    max_nocookie_response: int = Config.max_nocookie_response
    # Value of the edns-tcp-keepalive option we send, in units of 100 ms,
    # when the caller gives no ``TcpShape``: the global tcp_timeout. The TCP
    # transport passes its listener's own (tcp_timeout, tcp_pad, DSO state).
    tcp_keepalive: int = Config.tcp_timeout * 10
    # No DSO (RFC 8490) spoken: its opcode is NOTIMP like any other (spoken:
    # FORMERR over UDP or with records, ``query.parse``; TCP: ``engine.dso``).
    disable_tcp_dso: bool = Config.disable_tcp_dso
    # 32-byte secret for server cookies; the daemon loads or creates it.
    cookie_secret: bytes = b"\x00" * 32

    @classmethod
    def from_config(cls, config: Config, cookie_secret: bytes) -> EngineSettings:
        return cls(
            chaos_response=config.chaos_response,
            nsid=config.nsid,
            max_edns_response=config.max_edns_response,
            max_edns_response_v6=config.max_edns_response_v6,
            experimental_no_chain=config.experimental_no_chain,
            edns_client_subnet=config.edns_client_subnet,
            disable_cookies=config.disable_cookies,
            max_nocookie_response=config.max_nocookie_response,
            tcp_keepalive=config.tcp_timeout * 10,  # units of 100 ms
            disable_tcp_dso=config.disable_tcp_dso,
            cookie_secret=cookie_secret,
        )


class DynamicSource(Protocol):
    """The resolver plugins behind DYNA/DYNC (``pygdnsd.plugins.registry.Resolvers``)."""

    def resolve(self, plugin: str, resource: str, client: ClientInfo) -> DynamicResult: ...

    @property
    def changes(self) -> int:
        """A count that moves whenever a plugin may answer a client otherwise (states, live data)."""
        ...


class Responder:
    """Answers queries from one ``ZoneSet`` and one ``ChallengeSet`` (each swapped atomically).

    ``set_zones`` and ``set_challenges`` each read the other's current value:
    calls from different threads must be serialized by the caller
    (``instance.Instance`` does), so that neither undoes the other.
    """

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
        self._cache = AnswerCache(zones)
        self._rotation = 0
        self._chain = not settings.experimental_no_chain
        self._chaos_answer = chaos_answer(settings.chaos_response)
        self._udp_limit_v4 = settings.max_edns_response
        self._udp_limit_v6 = settings.max_edns_response_v6
        # Our OPT up to its RDLENGTH, for a client-subnet option, indexed by DO.
        self._subnet_opt_heads = [edns.opt_record(0, bool(do), b"")[:-2] for do in (0, 1)]
        # Our OPT for option-less queries over UDP, DO clear and set.
        self._bare_opts = (edns.opt_record(0, False, b""), edns.opt_record(0, True, b""))
        self._tcp_default = TcpShape(settings.tcp_keepalive)

    @property
    def zones(self) -> ZoneSet:
        return self._cache.zones

    def set_zones(self, zones: ZoneSet) -> None:
        """Serve ``zones`` from the next query on (a single reference swap)."""
        self._cache = AnswerCache(zones, self._cache.challenges)

    @property
    def challenges(self) -> ChallengeSet:
        return self._cache.challenges

    def set_challenges(self, live: ChallengeSet) -> None:
        """Serve the ACME challenges ``live`` from the next query on, with fresh caches."""
        self._cache = AnswerCache(self._cache.zones, live)

    def udp_fast_path(self, compiled: ModuleType) -> FastAnswers:
        """What the compiled UDP path (``transport/_fastpath.c``) answers from.

        It answers the common shape of UDP query (see ``respond``) when the
        question's prepared answer is in ``self._cache.by_question``, which
        it reads at each batch and after each call into Python (so a reload
        is seen as here); it advances ``self._rotation`` as ``_assemble``
        does, and counts in these ``stats`` dicts. Every other query comes
        to ``respond``: what goes into an answer is decided here only.
        """
        answers: FastAnswers = compiled.FastAnswers(
            self,
            opt_plain=self._bare_opts[0],
            opt_do=self._bare_opts[1],
            limit_v4=self._udp_limit_v4,
            limit_v6=self._udp_limit_v6,
            nocookie=self.settings.max_nocookie_response,
            part_mask=PART_MASK,
            rcode_names=_RCODE_NAMES,
            dns_counts=self.stats.dns.values,
            udp_counts=self.stats.udp.values,
        )
        return answers

    # -- the per-query path -------------------------------------------------

    def respond(
        self, query: bytes, client_ip: bytes, tcp: bool, shape: TcpShape | None = None
    ) -> bytes | None:
        """The response to ``query``, or ``None`` when no response must be sent.

        ``client_ip`` is the packed source address (4 or 16 bytes): it selects
        IPv4/IPv6 limits and feeds server cookies and plugins. ``tcp`` lifts
        the UDP size limits; ``shape`` says how the TCP connection's answers
        look (keepalive option, DSO session, padding), by default with the
        global ``tcp_timeout`` and no padding. ``None`` is also returned for a
        DSO protocol error (an edns-tcp-keepalive option while
        ``shape.in_dso_session``): the caller aborts the connection.
        """
        counters = self.stats.dns.values
        v6 = len(client_ip) == 16
        if v6:
            counters["v6"] += 1
        # One read: a reload swapping caches mid-query must not let an
        # answer from the old zones into the new zones' caches.
        cache = self._cache
        if not tcp:
            key = query[2:]
            rest = (cache.answers_v6 if v6 else cache.answers_v4)[hash(key) & PART_MASK].get(key)
            if rest is not None:
                # Count what building it counted (see ``AnswerCache.remember``).
                counters[_RCODE_NAMES[rest[1]]] += 1
                if query[11]:  # a bare OPT: the fast path's only additional record
                    counters["edns"] += 1
                    if query[-4] & 0x80:
                        counters["edns_do"] += 1
                    if rest[0] & _TC:
                        # gdnsd counts an EDNS truncation in edns_tc only, not also in tc.
                        self.stats.udp.values["edns_tc"] += 1
                    elif len(rest) > 510:
                        self.stats.udp.values["edns_big"] += 1
                elif rest[0] & _TC:
                    self.stats.udp.values["tc"] += 1
                return query[:2] + rest
            if query[10:12] == b"\x00\x01" and self.dynamic is not None:
                # A client-subnet query answered before from a remembered plugin result.
                response = self._remembered_subnet_response(cache, query, client_ip + key)
                if response is not None:
                    return response
            shape = None  # below: None over UDP, a TcpShape over TCP
        elif shape is None:
            shape = self._tcp_default
        # The common shape of query: QR=0, opcode 0, one question with an
        # uncompressed name, and after it either nothing or a bare version-0
        # OPT record (what resolvers send). Anything else, ``query.parse``.
        # Read here, not in a function of ``query``: the call alone added
        # 0.8% to the instructions per query of a warm server (measured).
        qend = 0
        n = len(query)
        if n > 16 and query[4:6] == b"\x00\x01" and not query[2] & 0xF8:
            pos = 12
            length = query[12]
            while length and length < 64:
                pos += length + 1
                if pos >= n:
                    break
                length = query[pos]
            if length == 0 and pos - 11 <= 255:
                end = pos + 5
                if (n == end and query[6:12] == b"\x00\x00\x00\x00\x00\x00") or (
                    n == end + 11
                    and query[6:12] == b"\x00\x00\x00\x00\x00\x01"
                    and query[end : end + 3] == b"\x00\x00\x29"
                    and query[end + 6] == 0
                    and query[end + 9 : end + 11] == b"\x00\x00"
                ):
                    qend = end
                elif (
                    # Over UDP, an OPT holding one client-subnet option and
                    # nothing else: what resolvers send a geoip name.
                    not tcp
                    and n >= end + 19
                    and query[end + 11 : end + 13] == b"\x00\x08"
                    and query[6:12] == b"\x00\x00\x00\x00\x00\x01"
                    and query[end : end + 3] == b"\x00\x00\x29"
                    and query[end + 6] == 0
                    and n == end + 11 + ((query[end + 9] << 8) | query[end + 10])
                    and n == end + 15 + ((query[end + 13] << 8) | query[end + 14])
                    and self.settings.edns_client_subnet
                ):
                    response = self._respond_client_subnet(cache, query, end, client_ip)
                    if response is not None:
                        return response
        if qend:
            bare_edns = n != qend  # the only other length taken: a bare OPT
            prepared = self._prebuilt_answer(cache, query, qend)
            if prepared is None:
                # Built for this query (maybe a plugin's answer): never remembered whole.
                prepared = self._build_answer(cache, query, qend, client_ip, None)
                if bare_edns:
                    return self._assemble_bare_edns(query, qend, prepared, client_ip, shape)
                return self._assemble(query, qend, prepared, None, client_ip, shape)
            if bare_edns:
                response = self._assemble_bare_edns(query, qend, prepared, client_ip, shape)
            else:
                response = self._assemble(query, qend, prepared, None, client_ip, shape)
            if not tcp and prepared[ROTATIONS] == 1:
                cache.remember(query, qend, response, v6)
            return response
        try:
            qend, edns_req = parse(
                query,
                self.settings.edns_client_subnet,
                not self.settings.disable_cookies,
                not self.settings.disable_tcp_dso,
                shape is not None and shape.in_dso_session,
            )
        except QueryProblem as problem:
            if problem.bad_cookie:
                counters["edns_cookie_formerr"] += 1
            return self._error(query, problem, client_ip, shape)
        subnet = _plugin_subnet(edns_req.client_subnet if edns_req is not None else None)
        prepared = self._lookup(cache, query, qend, client_ip, subnet)
        return self._assemble(query, qend, prepared, edns_req, client_ip, shape)

    def _remembered_subnet_response(self, cache: AnswerCache, query: bytes, key: bytes) -> bytes | None:
        """The remembered response (``_respond_client_subnet``) to ``key``: client address + query minus ID."""
        assert self.dynamic is not None
        responses = cache.subnet_responses
        if responses.changes != self.dynamic.changes:
            return None  # from before a change: ``_respond_client_subnet`` starts a new store
        remembered = responses.parts[hash(key) & PART_MASK].get(key)
        if remembered is None:
            return None
        # Count what building it counted (see ``remembered_subnet_response``).
        info = remembered[0]
        counters = self.stats.dns.values
        counters[_RCODE_NAMES[remembered[2]]] += 1
        counters["edns"] += 1
        counters["edns_clientsub"] += 1
        if info & _REMEMBERED_DO:
            counters["edns_do"] += 1
        if info & _REMEMBERED_BIG:
            self.stats.udp.values["edns_big"] += 1
        rotations = info >> 2
        if rotations == 1:
            return query[:2] + remembered[1:]
        self._rotation += 1
        size = (len(remembered) - 1) // rotations
        at = 1 + self._rotation % rotations * size
        return query[:2] + remembered[at : at + size]

    def _respond_client_subnet(self, cache: AnswerCache, query: bytes, qend: int, client_ip: bytes) -> bytes | None:
        """The UDP response to a query whose OPT holds exactly one client-subnet option.

        ``respond`` checked the layout; the option's content is checked here
        as ``edns.parse_opt`` checks it, and anything it would refuse (None)
        goes to ``query.parse`` for the error response. Reading the option
        and echoing it in place cost a third of ``parse`` and ``_assemble``
        (measured on the bench ``geoip`` case). A response from a result the
        plugin remembers is itself remembered for the same client address
        and query (``SubnetResponses``), until the plugins' ``changes`` count
        moves.
        """
        # Read before the plugin reads the states: see ``SubnetResponses``.
        responses = cache.subnet_responses_for(self.dynamic.changes) if self.dynamic is not None else None
        at = qend + 15  # the option's data: family, source prefix, scope, address
        family = (query[at] << 8) | query[at + 1]
        prefix = query[at + 2]
        if family == 1:
            width = 4
        elif family == 2:
            width = 16
        else:
            return None
        address = query[at + 4 :]
        if (
            query[at + 3]
            or prefix > width * 8
            or len(address) != (prefix + 7) >> 3
            or (prefix & 7 and address[-1] & (0xFF >> (prefix & 7)))
        ):
            return None
        self.stats.dns.values["edns_clientsub"] += 1
        subnet = PluginSubnet(address + bytes(width - len(address)), prefix)
        dynamic = None
        if query[qend - 2 : qend] == b"\x00\x01":
            # Class IN. A plugin's name first: the option is there for those.
            key = query[12 : qend - 4].translate(LOWER) + query[qend - 4 : qend - 2]
            dynamic = cache.dynamic_questions[hash(key) & PART_MASK].get(key)
        result = None
        if dynamic is not None:
            result = self._resolve(dynamic, ClientInfo(client_ip, subnet))
            prepared = self._answer_result(cache, key, dynamic, result)
        else:
            prepared = self._lookup(cache, query, qend, client_ip, subnet)
        # Our option: the query's, its scope set to the answer's.
        option = query[qend + 11 : at + 3] + bytes((prepared[SCOPE],)) + address
        response = self._assemble_bare_edns(query, qend, prepared, client_ip, None, option)
        if responses is not None and result is not None and result.remembered:
            remembered = remembered_subnet_response(query, qend, prepared, response)
            if remembered is not None:
                cache.remember_subnet_response(responses, client_ip + query[2:], remembered)
        return response

    def _prebuilt_answer(self, cache: AnswerCache, query: bytes, qend: int) -> Prepared | None:
        """The question's prebuilt answer, alike for every client (cached, CHAOS, REFUSED); else None."""
        qtc = query[qend - 4 : qend]
        qclass = (qtc[2] << 8) | qtc[3]
        if qclass == model.CLASS_IN or qclass == model.CLASS_ANY:
            key = query[12 : qend - 4].translate(LOWER) + qtc[:2]
            return cache.by_question[hash(key) & PART_MASK].get(key)
        if qclass == model.CLASS_CH:
            return self._chaos_answer
        return REFUSED

    def _lookup(
        self, cache: AnswerCache, query: bytes, qend: int, client_ip: bytes, subnet: PluginSubnet | None
    ) -> Prepared:
        """The prepared tail answering the (well-formed) question ending at ``qend``."""
        prepared = self._prebuilt_answer(cache, query, qend)
        if prepared is not None:
            return prepared
        return self._build_answer(cache, query, qend, client_ip, subnet)

    def _build_answer(
        self, cache: AnswerCache, query: bytes, qend: int, client_ip: bytes, subnet: PluginSubnet | None
    ) -> Prepared:
        """The answer ``_prebuilt_answer`` did not have: the question's first time, or a plugin's answer."""
        qtype = (query[qend - 4] << 8) | query[qend - 3]
        if qtype in _NOTIMP_QTYPES:
            return NOTIMP
        lname = query[12 : qend - 4].translate(LOWER)
        key = lname + query[qend - 4 : qend - 2]
        dynamic = cache.dynamic_questions[hash(key) & PART_MASK].get(key)
        if dynamic is not None:
            return self._answer_dynamic(cache, key, dynamic, ClientInfo(client_ip, subnet))
        return self._prepare(cache, lname, qtype, client_ip, subnet)

    def _assemble_bare_edns(
        self,
        query: bytes,
        qend: int,
        prepared: Prepared,
        client_ip: bytes,
        shape: TcpShape | None,
        subnet_option: bytes = b"",
    ) -> bytes:
        """``_assemble`` for a query whose OPT has no options (our OPT is prebuilt), or over UDP only
        a client-subnet option (``subnet_option``: the one we echo)."""
        do = query[qend + 7] & 0x80
        counters = self.stats.dns.values
        counters["edns"] += 1
        if do:
            counters["edns_do"] += 1
        if shape is None:
            if subnet_option:
                opt = self._subnet_opt_heads[1 if do else 0] + len(subnet_option).to_bytes(2, "big") + subnet_option
            else:
                opt = self._bare_opts[1 if do else 0]
        elif shape.pad:
            request = EdnsRequest(512, 0, bool(do))
            return self._assemble(query, qend, prepared, request, client_ip, shape, counted=True)
        else:
            opt = shape.bare_opts[1 if do else 0]
        flags, rcode, an, ns, ar, _scope, tail, rotations = prepared
        if rotations != 1:
            self._rotation += 1
            tail = rotated_tail(prepared, self._rotation)
        counters[_RCODE_NAMES[rcode]] += 1
        flags2 = 0x80 | flags | (query[2] & 0x01)
        question = query[12:qend]
        if shape is None:
            udp_size = (query[qend + 3] << 8) | query[qend + 4]
            limit = self._udp_limit_v6 if len(client_ip) == 16 else self._udp_limit_v4
            if udp_size < limit:
                limit = udp_size if udp_size > 512 else 512
            if self.settings.max_nocookie_response and self.settings.max_nocookie_response < limit:
                limit = self.settings.max_nocookie_response
            size = qend + len(tail) + len(opt)
            if size > limit:
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
        shape: TcpShape | None,
        counted: bool = False,
    ) -> bytes:
        flags, rcode, an, ns, ar, scope, tail, rotations = prepared
        if rotations != 1:
            self._rotation += 1
            tail = rotated_tail(prepared, self._rotation)
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
            if shape is None and len(response) > limit:
                self.stats.udp.bump("tc")
                return b"".join(
                    (query[:2], bytes((flags2 | _TC, rcode)), _COUNTS.pack(1, 0, 0, 0), question)
                )
            return response
        if not counted:
            counters["edns"] += 1
            if edns_req.do:
                counters["edns_do"] += 1
        options, cookie_ok = self._response_options(edns_req, client_ip, shape, scope)
        head = (query[:2], bytes((flags2, rcode)))
        body_len = 12 + len(question) + len(tail) + 11 + len(options)
        if shape is not None and shape.pad:
            options += edns.padding_option(body_len)
        opt = edns.opt_record(0, edns_req.do, options)
        if shape is None:
            limit = min(
                edns_req.udp_size,
                self.settings.max_edns_response_v6 if len(client_ip) == 16 else self.settings.max_edns_response,
            )
            nocookie = self.settings.max_nocookie_response
            if nocookie and not cookie_ok and nocookie < limit:
                limit = nocookie
            if body_len > limit:
                self.stats.udp.bump("edns_tc")
                return b"".join((*head[:1], bytes((flags2 | _TC, rcode)), _COUNTS.pack(1, 0, 0, 1), question, opt))
            if body_len > 512:
                self.stats.udp.bump("edns_big")
        return b"".join((*head, _COUNTS.pack(1, an, ns, ar + 1), question, tail, opt))

    def _response_options(
        self, edns_req: EdnsRequest, client_ip: bytes, shape: TcpShape | None, scope: int = 0
    ) -> tuple[bytes, bool]:
        """Our OPT's options for this query, and whether it carried a valid server cookie."""
        settings = self.settings
        # gdnsd's option order: client subnet, cookie, keepalive, NSID.
        parts = []
        cookie_ok = False
        counters = self.stats.dns.values
        if edns_req.client_subnets:
            counters["edns_clientsub"] += edns_req.client_subnets
        subnet = edns_req.client_subnet
        if subnet is not None:
            data = struct.pack("!HBB", subnet.family, subnet.source_prefix, scope) + subnet.address
            parts.append(edns.option(edns.OPT_CLIENT_SUBNET, data))
        if edns_req.cookie is not None:  # never read with disable_cookies (``query.parse``)
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
        if shape is not None:
            parts.append(shape.keepalive_option)
        if edns_req.nsid and settings.nsid is not None:
            parts.append(edns.option(edns.OPT_NSID, settings.nsid))
        return b"".join(parts), cookie_ok

    def _error(
        self, query: bytes, problem: QueryProblem, client_ip: bytes, shape: TcpShape | None
    ) -> bytes | None:
        counters = self.stats.dns.values
        edns_req = problem.edns
        if edns_req is not None:
            # gdnsd counts an OPT record as it reads it, whatever the answer.
            counters["edns"] += 1
            if edns_req.do:
                counters["edns_do"] += 1
        if problem.rcode is None:
            counters["dropped"] += 1
            if problem.dso_protocol_error:
                self.stats.tcp.values["dso_protoerr"] += 1
            return None
        rcode = problem.rcode
        counters[_RCODE_NAMES.get(rcode, "formerr")] += 1
        if problem.header_only:
            if edns_req is not None:
                self._response_options(edns_req, client_ip, shape)  # counted as read, not answered
            return query[:2] + bytes((0x80 | (query[2] & 0x78), rcode)) + _COUNTS.pack(0, 0, 0, 0)
        question = b""
        if problem.with_question:
            qend = question_end(query, 12)
            if qend is not None:
                question = query[12:qend]
        flags2 = 0x80 | (query[2] & 0x79)  # echo opcode and RD
        head = query[:2] + bytes((flags2, rcode & 0x0F))
        qdcount = 1 if question else 0
        if edns_req is None:
            return head + _COUNTS.pack(qdcount, 0, 0, 0) + question
        if rcode == BADVERS:
            # gdnsd sends no NSID or cookie with BADVERS, only the TCP keepalive.
            options = shape.keepalive_option if shape is not None else b""
        else:
            options, _ = self._response_options(edns_req, client_ip, shape)
        if shape is not None and shape.pad:
            # gdnsd pads every TCP answer carrying an OPT, errors included.
            options += edns.padding_option(12 + len(question) + 11 + len(options))
        opt = edns.opt_record(rcode >> 4, edns_req.do, options)
        return head + _COUNTS.pack(qdcount, 0, 0, 1) + question + opt

    # -- building and caching tails ----------------------------------------

    def _prepare(
        self, cache: AnswerCache, lname: bytes, qtype: int, client_ip: bytes, subnet: PluginSubnet | None
    ) -> Prepared:
        zones = cache.zones
        zone = zones.find_zone(lname)
        key = lname + bytes((qtype >> 8, qtype & 0xFF))
        if zone is None:
            prepared = REFUSED
        else:
            where = lookup.locate(zone, lname)
            record = lookup.dynamic_at(where, qtype)
            if record is not None:
                # Plugin answers depend on monitor states, the client and chance
                # (weighted): never cached by question (see ``_answer_dynamic``).
                dynamic = DynamicQuestion(where, record)
                cache.add_dynamic_question(key, dynamic)
                return self._answer_dynamic(cache, key, dynamic, ClientInfo(client_ip, subnet))
            match = cache.challenges.matching(lname) if cache.challenges else None
            prepared = self._prepare_static(cache, where, lname, qtype, match)
        cache.add_question(key, prepared)
        return prepared

    def _prepare_static(
        self, cache: AnswerCache, where: lookup.Location, lname: bytes, qtype: int, match: Match | None
    ) -> Prepared:
        """The shared tail for this decision and this question's layout (see ``answer_cache``).

        ``match``: the live ACME challenges ``lname`` matches (others may
        match where a CNAME chain ends: ``challenges.merge`` looks).
        """
        if match is None and (where.kind == "node" or where.kind == "wildcard"):
            rrset = where.node.get(qtype)
            if rrset is not None and rrset.rtype not in COMPRESSED_TYPES:
                # The common answer: one RRset, owner the question, nothing to
                # compress, so one tail serves every name holding this RRset.
                part = cache.by_rrset[hash(id(rrset)) & PART_MASK]
                prepared = part.get(id(rrset))
                if prepared is None:
                    prepared = part[id(rrset)] = plain_answer(rrset)
                return prepared
        decision = lookup.decide_at(cache.zones, where, qtype, self._chain)
        if cache.challenges:
            decision = challenges.merge(decision, cache.challenges, lname, qtype, where.zone.apex, self._chain)
        content = decision.signature()
        layouts = cache.layouts[hash(content) & PART_MASK]
        layout = layouts.get(content)
        if layout is not None:
            key = tail_key(content, lname, layout)
            prepared = cache.by_tail[hash(key) & PART_MASK].get(key)
            if prepared is not None:
                return prepared
        prepared, built_wanted, internal = encode_decision(decision, lname, 16 + len(lname))
        if layout is not None:
            built_wanted = built_wanted.union(layout[1:])
            internal = internal or layout[0] == INTERNAL
        # A flat tuple of bytes (see Prepared): a set, or a tuple holding one, stays tracked.
        layout = (INTERNAL if internal else EXTERNAL, *built_wanted)
        layouts[content] = layout
        cache.add_tail(tail_key(content, lname, layout), prepared)
        return prepared

    def _answer_dynamic(
        self, cache: AnswerCache, key: bytes, dynamic: DynamicQuestion, client: ClientInfo
    ) -> Prepared:
        """The plugin's answer to question ``key`` for ``client``."""
        return self._answer_result(cache, key, dynamic, self._resolve(dynamic, client))

    def _resolve(self, dynamic: DynamicQuestion, client: ClientInfo) -> DynamicResult | None:
        """What the plugin answers ``client`` for the question's record (None: no plugins)."""
        if self.dynamic is None:
            return None
        record = dynamic.record
        return self.dynamic.resolve(record.plugin, record.resource, client)

    def _answer_result(
        self, cache: AnswerCache, key: bytes, dynamic: DynamicQuestion, result: DynamicResult | None
    ) -> Prepared:
        """The prepared answer the plugin's ``result`` gives question ``key`` (see ``AnswerCache.add_dynamic_answer``)."""
        known = cache.dynamic_answers.get(id(result))
        if known is not None and known[0] is result:
            prepared = known[1].get(key)
            if prepared is not None:
                return prepared
        prepared = self._prepare_dynamic(cache, dynamic, key, result)
        if result is not None and result.remembered:
            cache.add_dynamic_answer(result, key, prepared)
        return prepared

    def _prepare_dynamic(
        self, cache: AnswerCache, dynamic: DynamicQuestion, key: bytes, result: DynamicResult | None
    ) -> Prepared:
        """Encode the answer a plugin's ``result`` gives question ``key``; its scope is the result's."""

        def resolve(found: DynamicRRset, zone: Zone, asked: int) -> RRset | None:
            # ``decide_at`` asks for the one record that answers the question.
            assert found is dynamic.record
            return dynamic_rrset(result, found, zone, asked) if result is not None else None

        lname = key[:-2]
        qtype = (key[-2] << 8) | key[-1]
        decision = lookup.decide_at(cache.zones, dynamic.where, qtype, self._chain, resolve)
        if cache.challenges:
            decision = challenges.merge(decision, cache.challenges, lname, qtype, dynamic.where.zone.apex, self._chain)
        built, _, _ = encode_decision(decision, lname, 16 + len(lname))
        if result is None or not result.scope:
            return built
        flags, rcode, an, ns, ar, _, tails, rotations = built
        return (flags, rcode, an, ns, ar, result.scope, tails, rotations)


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


# What a remembered client-subnet response counted when it was built
# (``remembered_subnet_response``): its first byte, below the rotation count.
_REMEMBERED_DO = 0x01
_REMEMBERED_BIG = 0x02
# Rotations of an answer remembered whole, at most: a longer RRset is not
# remembered (its rotations, end to end, would cost 100 bytes each).
_REMEMBERED_ROTATIONS = 8


def remembered_subnet_response(query: bytes, qend: int, prepared: Prepared, response: bytes) -> bytes | None:
    """How a UDP response to a client-subnet query is remembered (None: it is not).

    One byte saying what serving it counts (DO, ``edns_big``) and how many
    rotations follow (bits 2-7), then the response minus its ID once per
    rotation of its answer: the responses differ only in the tail, which
    the question precedes and our OPT follows. Truncated responses are
    rebuilt each time, as are answers with more than ``_REMEMBERED_ROTATIONS``.
    """
    rotations = prepared[ROTATIONS]
    if response[2] & _TC or rotations > _REMEMBERED_ROTATIONS:
        return None
    info = (rotations << 2) | (_REMEMBERED_DO if query[qend + 7] & 0x80 else 0)
    if len(response) > 512:
        info |= _REMEMBERED_BIG
    if rotations == 1:
        return bytes((info,)) + response[2:]
    size = len(prepared[TAILS]) // rotations
    head, opt = response[2:qend], response[qend + size :]
    return bytes((info,)) + b"".join(head + rotated_tail(prepared, i) + opt for i in range(rotations))


def _plugin_subnet(subnet: ClientSubnet | None) -> PluginSubnet | None:
    """The query's client-subnet option as plugins take it (address zero-filled to full length)."""
    if subnet is None:
        return None
    width = 4 if subnet.family == 1 else 16
    return PluginSubnet(subnet.address.ljust(width, b"\x00"), subnet.source_prefix)
