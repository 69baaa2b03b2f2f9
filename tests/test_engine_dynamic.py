"""DYNA/DYNC answers: the engine asks the resolver plugins at query time.

Answers are kept only from results a plugin says it remembers
(``DynamicResult.remembered``, geoip's), and whole responses to
client-subnet queries only until the plugins' ``changes`` count moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnslib import DNSRecord

from engine_support import opt_rr, option, parse, query
from pygdnsd.engine.edns import OPT_CLIENT_SUBNET
from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.engine.stats import Stats
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.zones import model, names
from pygdnsd.zones.model import DynamicRRset, RRset, Zone, ZoneSet

V4 = b"\x7f\x00\x00\x01"
A = model.A
AAAA = model.AAAA
APEX = names.from_text("example.com.")
SOA = RRset(model.SOA, 900, (names.from_text("ns1.example.com.") + names.from_text("hm.example.com.") + bytes(20),))


@dataclass
class FakePlugins:
    """Answers from a table the test changes between queries; records each call."""

    answers: dict[str, DynamicResult]
    calls: list[tuple[str, str, ClientInfo]] = field(default_factory=list)
    changes: int = 0

    def resolve(self, plugin: str, resource: str, client: ClientInfo) -> DynamicResult:
        self.calls.append((plugin, resource, client))
        return self.answers[resource]


def zones() -> ZoneSet:
    def name(text: str) -> bytes:
        return names.from_text(text, APEX)

    nodes: dict[bytes, dict[int, RRset]] = {
        APEX: {
            model.SOA: SOA,
            model.NS: RRset(model.NS, 3600, (name("ns1"),)),
        },
        name("ns1"): {A: RRset(A, 3600, (b"\xc0\x00\x02\x01",))},
        name("www"): {
            model.DYNA: DynamicRRset(model.DYNA, 300, (), "multifo", "www", 60),
            model.MX: RRset(model.MX, 3600, (b"\x00\x0a" + name("mail"),)),
        },
        name("web"): {model.DYNC: DynamicRRset(model.DYNC, 600, (), "simplefo", "web", 30)},
    }
    zone = Zone(APEX, 1, SOA, nodes, frozenset())
    return ZoneSet({APEX: zone})


def make(answers: dict[str, DynamicResult]) -> tuple[Responder, FakePlugins]:
    plugins = FakePlugins(answers)
    return Responder(zones(), EngineSettings(), Stats(), plugins), plugins


def test_dyna_answers_the_plugins_addresses_with_the_clamped_ttl() -> None:
    engine, plugins = make({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"), ttl=20)})
    msg = parse(engine.respond(query("www.example.com", A), V4, False))
    assert msg.aa and msg.rcode == 0
    assert sorted(rr.rdata for rr in msg.answer) == [b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"]
    # The monitored TTL (20) is below the record's MIN (60): MIN wins.
    assert {rr.ttl for rr in msg.answer} == {60}
    assert plugins.calls[0][:2] == ("multifo", "www")
    assert plugins.calls[0][2].address == V4


def test_dyna_is_asked_again_for_every_query() -> None:
    engine, plugins = make({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",), ttl=3000)})
    first = parse(engine.respond(query("www.example.com", A), V4, False))
    plugins.answers["www"] = DynamicResult(v4=(b"\x0a\x00\x00\x09",), ttl=3000)
    second = parse(engine.respond(query("www.example.com", A), V4, False))
    assert [rr.rdata for rr in first.answer] == [b"\x0a\x00\x00\x01"]
    assert [rr.rdata for rr in second.answer] == [b"\x0a\x00\x00\x09"]
    assert {rr.ttl for rr in first.answer} == {300}  # capped at the record's MAX
    assert len(plugins.calls) == 2


def test_repeated_identical_dyna_queries_are_never_answered_from_memory() -> None:
    # Same query bytes again and again (what a busy resolver sends): every one
    # reaches the plugin, so a monitor state change shows in the next answer.
    engine, plugins = make({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",), ttl=3000)})
    wire = query("www.example.com", A, edns=opt_rr())
    for _ in range(3):
        assert [rr.rdata for rr in parse(engine.respond(wire, V4, False)).answer] == [b"\x0a\x00\x00\x01"]
    plugins.answers["www"] = DynamicResult(v4=(b"\x0a\x00\x00\x09",), ttl=3000)
    assert [rr.rdata for rr in parse(engine.respond(wire, V4, False)).answer] == [b"\x0a\x00\x00\x09"]
    assert len(plugins.calls) == 4


def test_dyna_without_addresses_of_the_family_is_nodata() -> None:
    engine, _ = make({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",))})
    msg = parse(engine.respond(query("www.example.com", AAAA), V4, False))
    assert msg.rcode == 0 and not msg.answer
    assert [rr.rtype for rr in msg.authority] == [model.SOA]


def test_static_data_beside_a_dyna_is_served_for_other_types() -> None:
    engine, plugins = make({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",))})
    msg = parse(engine.respond(query("www.example.com", model.MX), V4, False))
    assert [rr.rtype for rr in msg.answer] == [model.MX]
    assert plugins.calls == []


def test_dync_answers_its_cname_for_every_type_any_included() -> None:
    # gdnsd 3.8.1 answers ANY at such a DYNC with the CNAME too (plugin differential test).
    target = names.from_text("backup.example.net.")
    engine, _ = make({"web": DynamicResult(cname=target, ttl=100)})
    for qtype in (A, AAAA, model.MX, model.TXT, model.ANY):
        msg = parse(engine.respond(query("web.example.com", qtype), V4, False))
        assert [(rr.rtype, rr.ttl) for rr in msg.answer] == [(model.CNAME, 100)]


def test_any_at_a_dync_with_addresses_is_the_rfc8482_hinfo() -> None:
    engine, _ = make({"web": DynamicResult(v4=(b"\x0a\x00\x00\x05",))})
    msg = parse(engine.respond(query("web.example.com", model.ANY), V4, False))
    assert [rr.rtype for rr in msg.answer] == [model.HINFO]


def test_dync_relative_cname_takes_the_zone_origin() -> None:
    engine, _ = make({"web": DynamicResult(cname=b"\x06backup", cname_relative=True)})
    response = engine.respond(query("web.example.com", A), V4, False)
    assert response is not None
    (answer,) = DNSRecord.parse(response).rr
    assert str(answer.rdata) == "backup.example.com."


def test_dync_with_addresses_answers_a_and_aaaa() -> None:
    engine, _ = make({"web": DynamicResult(v4=(b"\x0a\x00\x00\x05",), v6=(bytes(15) + b"\x05",))})
    a = parse(engine.respond(query("web.example.com", A), V4, False))
    aaaa = parse(engine.respond(query("web.example.com", AAAA), V4, False))
    mx = parse(engine.respond(query("web.example.com", model.MX), V4, False))
    assert [rr.rtype for rr in a.answer] == [A]
    assert [rr.rtype for rr in aaaa.answer] == [AAAA]
    assert not mx.answer and mx.rcode == 0


def test_client_subnet_reaches_the_plugin_and_its_scope_is_echoed() -> None:
    engine, plugins = make({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",), scope=24)})
    ecs = option(OPT_CLIENT_SUBNET, b"\x00\x01\x18\x00\xc6\x33\x64")
    msg = parse(engine.respond(query("www.example.com", A, edns=opt_rr(options=ecs)), V4, False))
    client = plugins.calls[0][2]
    assert client.subnet is not None
    assert client.subnet.address == b"\xc6\x33\x64\x00" and client.subnet.source_prefix == 24
    assert dict(msg.options)[OPT_CLIENT_SUBNET] == b"\x00\x01\x18\x18\xc6\x33\x64"


# -- remembered results ------------------------------------------------------------

ECS_24 = option(OPT_CLIENT_SUBNET, b"\x00\x01\x18\x00\xc6\x33\x64")  # 198.51.100.0/24
ECS_OTHER = option(OPT_CLIENT_SUBNET, b"\x00\x01\x18\x00\xc6\x33\x65")


def ecs_query(ecs: bytes = ECS_24, ident: int = 0x1234, do: bool = False) -> bytes:
    return query("www.example.com", A, ident=ident, edns=opt_rr(options=ecs, do=do))


def make_seen(answers: dict[str, DynamicResult]) -> tuple[Responder, FakePlugins]:
    """``make``, the question asked once already (a name's first query is answered the long way)."""
    engine, plugins = make(answers)
    engine.respond(query("www.example.com", A), V4, False)
    plugins.calls.clear()
    for counters in (engine.stats.dns.values, engine.stats.udp.values):
        counters.update(dict.fromkeys(counters, 0))
    return engine, plugins


def test_a_remembered_result_answers_a_repeated_subnet_query_from_memory_until_a_change() -> None:
    engine, plugins = make_seen({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",), scope=16, remembered=True)})
    first = engine.respond(ecs_query(ident=1), V4, False)
    again = engine.respond(ecs_query(ident=2), V4, False)
    assert first is not None and again is not None
    assert again[:2] == b"\x00\x02" and again[2:] == first[2:]
    assert len(plugins.calls) == 1
    # Another subnet, another client address: the plugin is asked.
    engine.respond(ecs_query(ECS_OTHER), V4, False)
    engine.respond(ecs_query(), bytes((127, 0, 0, 2)), False)
    assert len(plugins.calls) == 3
    # A state or data change moves the count: nothing remembered before is served.
    plugins.answers["www"] = DynamicResult(v4=(b"\x0a\x00\x00\x09",), scope=20, remembered=True)
    plugins.changes += 1
    changed = parse(engine.respond(ecs_query(), V4, False))
    assert [rr.rdata for rr in changed.answer] == [b"\x0a\x00\x00\x09"]
    assert dict(changed.options)[OPT_CLIENT_SUBNET] == b"\x00\x01\x18\x14\xc6\x33\x64"
    assert len(plugins.calls) == 4


def test_results_not_remembered_reach_the_plugin_for_every_subnet_query() -> None:
    engine, plugins = make_seen({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",), scope=16)})
    for _ in range(3):
        engine.respond(ecs_query(), V4, False)
    assert len(plugins.calls) == 3


def test_remembered_responses_count_what_built_ones_count() -> None:
    result = DynamicResult(v4=(b"\x0a\x00\x00\x01",), scope=16)
    built, _ = make_seen({"www": result})
    remembered, plugins = make_seen({"www": DynamicResult(result.v4, scope=16, remembered=True)})
    for engine in (built, remembered):
        for do in (False, True, True):
            engine.respond(ecs_query(do=do), V4, False)
    assert len(plugins.calls) == 2  # one per DO value: the rest from memory
    assert remembered.stats.dns.values == built.stats.dns.values
    assert remembered.stats.udp.values == built.stats.udp.values
    assert built.stats.dns.values["edns_clientsub"] == 3 and built.stats.dns.values["edns_do"] == 2


def test_remembered_responses_rotate_their_addresses_as_built_ones_do() -> None:
    addresses = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x03")
    engine, plugins = make_seen({"www": DynamicResult(addresses, scope=16, remembered=True)})
    firsts = [parse(engine.respond(ecs_query(ident=i), V4, False)).answer[0].rdata for i in range(6)]
    assert len(plugins.calls) == 1
    assert sorted(firsts[:3]) == sorted(addresses) and firsts[3:] == firsts[:3]
    answers = [sorted(rr.rdata for rr in parse(engine.respond(ecs_query(), V4, False)).answer) for _ in range(3)]
    assert answers == [sorted(addresses)] * 3


def test_a_truncated_subnet_response_is_rebuilt_each_time() -> None:
    many = tuple(bytes((10, 0, i // 256, i % 256)) for i in range(200))  # 200 A records: past 1232 bytes
    engine, plugins = make_seen({"www": DynamicResult(many, scope=16, remembered=True)})
    wire = query("www.example.com", A, edns=opt_rr(size=1232, options=ECS_24))
    for _ in range(2):
        assert parse(engine.respond(wire, V4, False)).flags & 0x0200  # TC
    assert len(plugins.calls) == 2
    assert engine.stats.udp.values["edns_tc"] == 2


def test_a_full_store_of_subnet_responses_keeps_every_other_one() -> None:
    """A part that fills drops every other entry, oldest first: the rest still answer."""
    from pygdnsd.engine import answer_cache

    engine, plugins = make_seen({"www": DynamicResult(v4=(b"\x0a\x00\x00\x01",), scope=16, remembered=True)})
    cache = engine._cache
    bound = cache._remembered_part_bound = 32  # a small store, asked 1.5 times what it holds
    subnets = [
        option(OPT_CLIENT_SUBNET, b"\x00\x01\x18\x00" + bytes((10, i >> 8, i & 255)))
        for i in range(3 * bound * answer_cache.PARTS // 2)
    ]
    for ecs in subnets:
        engine.respond(ecs_query(ecs), V4, False)
    parts = cache.subnet_responses.parts
    assert all(len(part) <= bound for part in parts)
    assert sum(len(part) for part in parts) > bound * answer_cache.PARTS // 2
    calls = len(plugins.calls)
    for ecs in subnets:
        engine.respond(ecs_query(ecs), V4, False)
    again = len(plugins.calls) - calls
    assert 0 < again < len(subnets) * 85 // 100  # a part emptied when full answers next to none again
