"""Resolver plugins: answers and TTLs for given monitor states.

The expected answers and TTLs are what Debian's gdnsd 3.8.1 served for the
same config and states (set there through a direct-mode extfile and
admin_state; see the report of issue 5), e.g. no TTL halving when a primary is down.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from pygdnsd.config.vscf import ConfigHash, parse_bytes
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.service_types import parse_service_types
from pygdnsd.monitoring.sttl import TTL_MAX, Sttl, clamp_ttl
from pygdnsd.plugins.registry import Resolvers, load_plugins, parse_reference
from pygdnsd.plugins.result import ClientInfo, ClientSubnet

CONFIG = b"""
service_types => {
  ext => { plugin => extfile, file => /nonexistent/extdata, direct => true }
}
plugins => {
  simplefo => { service_types => ext, sf => { primary => 10.0.0.1, secondary => 10.0.0.2 } }
  multifo => { service_types => ext, mf => [ 10.0.0.1, 10.0.0.2, 10.0.0.3 ] }
  weighted => { service_types => ext, w => { a => [ 10.0.0.1, 10 ], b => [ 10.0.0.2, 10 ] } }
  metafo => { resources => { mt => { datacenters => [ d1, d2 ], dcmap => { d1 => 10.0.0.1, d2 => 10.0.0.2 }, service_types => ext } } }
  static => { s => 10.9.9.9, six => 2001:db8::1, cn => target.example.net. }
}
"""

CLIENT = ClientInfo(socket.inet_aton("127.0.0.1"))


def load(text: bytes, tmp_path: Path) -> tuple[Resolvers, Monitor]:
    top = parse_bytes(text, "config")
    assert isinstance(top, ConfigHash)
    empty = ConfigHash(top.pos)
    stypes = top.get("service_types", empty)
    plugins = top.get("plugins", empty)
    assert isinstance(stypes, ConfigHash) and isinstance(plugins, ConfigHash)
    monitor = Monitor(parse_service_types(stypes, tmp_path), tmp_path)
    return load_plugins(plugins, monitor), monitor


def ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def ext(**states: Sttl) -> dict[str, Sttl]:
    return {f"10.0.0.{k[1:]}/ext": v for k, v in states.items()}


def up(ttl: int) -> Sttl:
    return Sttl(down=False, ttl=ttl)


def down(ttl: int) -> Sttl:
    return Sttl(down=True, ttl=ttl)


def test_all_up_ttls(tmp_path: Path) -> None:
    resolvers, _ = load(CONFIG, tmp_path)
    states = ext(a1=up(500), a2=up(400), a3=up(300))
    sf = resolvers.resolve("simplefo", "sf", CLIENT, states)
    assert (sf.v4, sf.ttl, sf.failed) == ((ip("10.0.0.1"),), 500, False)
    mf = resolvers.resolve("multifo", "mf", CLIENT, states)
    assert (set(mf.v4), mf.ttl) == ({ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")}, 300)
    w = resolvers.resolve("weighted", "w", CLIENT, states)
    assert w.ttl == 400 and len(w.v4) == 1
    mt = resolvers.resolve("metafo", "mt", CLIENT, states)
    assert (mt.v4, mt.ttl) == ((ip("10.0.0.1"),), 500)


def test_primary_down_takes_least_ttl_without_halving(tmp_path: Path) -> None:
    resolvers, _ = load(CONFIG, tmp_path)
    states = ext(a1=down(200), a2=up(400), a3=up(300))
    sf = resolvers.resolve("simplefo", "sf", CLIENT, states)
    assert (sf.v4, sf.ttl) == ((ip("10.0.0.2"),), 200)
    mf = resolvers.resolve("multifo", "mf", CLIENT, states)
    assert (set(mf.v4), mf.ttl, mf.failed) == ({ip("10.0.0.2"), ip("10.0.0.3")}, 200, False)
    for _ in range(20):
        w = resolvers.resolve("weighted", "w", CLIENT, states)
        assert (w.v4, w.ttl) == ((ip("10.0.0.2"),), 200)
    mt = resolvers.resolve("metafo", "mt", CLIENT, states)
    assert (mt.v4, mt.ttl) == ((ip("10.0.0.2"),), 200)


def test_below_up_thresh_answers_everything(tmp_path: Path) -> None:
    resolvers, _ = load(CONFIG, tmp_path)
    states = ext(a1=down(800), a2=down(700), a3=up(950))
    sf = resolvers.resolve("simplefo", "sf", CLIENT, states)
    assert (sf.v4, sf.ttl, sf.failed) == ((ip("10.0.0.1"),), 700, True)
    mf = resolvers.resolve("multifo", "mf", CLIENT, states)
    assert (len(mf.v4), mf.ttl, mf.failed) == (3, 700, True)
    seen = {
        resolvers.resolve("weighted", "w", CLIENT, states, rng=random.Random(i)).v4
        for i in range(40)
    }
    assert seen == {(ip("10.0.0.1"),), (ip("10.0.0.2"),)}
    mt = resolvers.resolve("metafo", "mt", CLIENT, states)
    assert (mt.v4, mt.ttl, mt.failed) == ((ip("10.0.0.1"),), 700, True)


def test_metafo_forced_datacenter_and_direct_dc(tmp_path: Path) -> None:
    resolvers, monitor = load(CONFIG, tmp_path)
    assert "metafo/mt/d1" in monitor.names()
    states = {**ext(a1=up(500), a2=up(400)), "metafo/mt/d1": Sttl(down=True, ttl=77, forced=True)}
    mt = resolvers.resolve("metafo", "mt", CLIENT, states)
    assert (mt.v4, mt.ttl) == ((ip("10.0.0.2"),), 77)
    direct = resolvers.resolve("metafo", "mt/d1", CLIENT, ext(a1=down(30)))
    assert direct.v4 == (ip("10.0.0.1"),)


def test_static_null_reflect(tmp_path: Path) -> None:
    resolvers, _ = load(CONFIG, tmp_path)
    s = resolvers.resolve("static", "s", CLIENT, {})
    assert (s.v4, s.ttl) == ((ip("10.9.9.9"),), TTL_MAX)
    assert resolvers.resolve("static", "six", CLIENT, {}).v6 == (ip("2001:db8::1"),)
    cn = resolvers.resolve("static", "cn", CLIENT, {})
    assert cn.cname == b"\x06target\x07example\x03net\x00"
    null = resolvers.resolve("null", "anything", CLIENT, {})
    assert (null.v4, null.v6) == ((bytes(4),), (bytes(16),))
    subnet = ClientSubnet(ip("10.1.2.0"), 24)
    with_ecs = ClientInfo(ip("127.0.0.1"), subnet)
    best = resolvers.resolve("reflect", "", with_ecs, {})
    assert (best.v4, best.scope) == ((ip("10.1.2.0"),), 24)
    both = resolvers.resolve("reflect", "both", with_ecs, {})
    assert set(both.v4) == {ip("10.1.2.0"), ip("127.0.0.1")}
    assert resolvers.resolve("reflect", "edns", CLIENT, {}).v4 == (bytes(4),)
    assert resolvers.resolve("reflect", "dns", CLIENT, {}).scope == 0
    dns = resolvers.resolve("reflect", "dns", with_ecs, {})
    assert (dns.v4, dns.scope) == ((ip("127.0.0.1"),), 24)


def test_clamp_ttl_to_record_max_min() -> None:
    assert clamp_ttl(TTL_MAX, 300, 150) == 300
    assert clamp_ttl(4, 300, 150) == 150
    assert clamp_ttl(200, 1000, 5) == 200


def test_check_rejects_unknown_resources_and_cname_in_dyna(tmp_path: Path) -> None:
    resolvers, _ = load(CONFIG, tmp_path)
    resolvers.check("static", "s", dync=False)
    resolvers.check("static", "cn", dync=True)
    with pytest.raises(ConfigError, match="rejected resource name 'nope'"):
        resolvers.check("static", "nope", dync=False)
    with pytest.raises(ConfigError, match="only be used by DYNC"):
        resolvers.check("static", "cn", dync=False)
    with pytest.raises(ConfigError, match="no such plugin 'bogus'"):
        resolvers.check("bogus", "x", dync=False)
    assert parse_reference("metafo!mt/d1") == ("metafo", "mt/d1")
    assert parse_reference("null") == ("null", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"plugins => { bogus => {} }", r"config:1: plugins: no such plugin 'bogus'"),
        (b"plugins => { geoip => { maps => {} } }", r"config:1: plugin_geoip: .maps. stanza must contain one or more maps"),
        (
            b"plugins => {\n simplefo => { r => { primary => 192.0.2.1 } } }",
            r"config:2: .*'secondary' must be defined",
        ),
        (b"plugins => { multifo => { r => {} } }", r"config:1: .*no addresses defined"),
        (
            b"plugins => { metafo => { resources => { r => { datacenters => [a], dcmap => {} } } } }",
            r"config:1: .*the dcmap does not match the datacenters list",
        ),
        (
            b"plugins => { simplefo => { service_types => nope, r => { primary => 192.0.2.1, secondary => 192.0.2.2 } } }",
            r"invalid service type 'nope'",
        ),
        (b"plugins => { weighted => { r => { a => [ 192.0.2.1, 0 ] } } }", r"config:1: .*weight"),
        (
            b"plugins => { multifo => { up_thresh => 0, r => [ 192.0.2.1 ] } }",
            r"config:1: .*up_thresh",
        ),
    ],
)
def test_bad_plugin_config_names_file_and_key(tmp_path: Path, text: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(text, tmp_path)


def test_weighted_multi_and_groups(tmp_path: Path) -> None:
    text = b"""plugins => { weighted => {
      m => { multi => true, a => [ 192.0.2.1, 60 ], b => [ 192.0.2.2, 60 ], c => [ 192.0.2.3, 45 ] }
      g => { g1 => { a => [ 192.0.2.1, 10 ], b => [ 192.0.2.2, 10 ] }, g2 => { c => [ 192.0.2.9, 20 ] } }
      cn => { a => [ a.example.net., 1 ], b => [ b.example.net., 1 ] }
    } }"""
    resolvers, _ = load(text, tmp_path)
    seen = set()
    for i in range(60):
        m = resolvers.resolve("weighted", "m", CLIENT, {}, rng=random.Random(i))
        assert {ip("192.0.2.1"), ip("192.0.2.2")} <= set(m.v4)
        seen.add(len(m.v4))
        g = resolvers.resolve("weighted", "g", CLIENT, {}, rng=random.Random(i))
        assert set(g.v4) in ({ip("192.0.2.1"), ip("192.0.2.2")}, {ip("192.0.2.9")})
    assert seen == {2, 3}
    resolvers.check("weighted", "cn", dync=True)
    assert resolvers.resolve("weighted", "cn", CLIENT, {}).cname is not None


CNAME_DC_CONFIG = b"""
service_types => {
  ext => { plugin => extfile, file => /nonexistent/extdata, direct => true }
}
plugins => {
  simplefo => { r1 => { primary => 10.0.0.1, secondary => 10.0.0.2 } }
  metafo => {
    service_types => up
    resources => {
      m1 => { datacenters => [ dc1, dc2 ], dcmap => { dc1 => m1cname.example.net., dc2 => %simplefo!r1 } }
      m2 => { service_types => [ up, ext ], datacenters => [ dc1 ], dcmap => { dc1 => m2cname.example.net. } }
      m3 => { service_types => [ ], datacenters => [ dc1 ], dcmap => { dc1 => m3cname.example.net. } }
    }
  }
}
"""


def test_metafo_cname_datacenters_are_monitored(tmp_path: Path) -> None:
    # gdnsd 3.8.1 (gdnsdctl states): each CNAME datacenter gets CNAME/TYPE per
    # service type of its resource, listed after the datacenter's own state.
    _, monitor = load(CNAME_DC_CONFIG, tmp_path)
    assert monitor.names()[:6] == [
        "metafo/m1/dc1",
        "m1cname.example.net./up",
        "metafo/m1/dc2",
        "metafo/m2/dc1",
        "m2cname.example.net./up",
        "m2cname.example.net./ext",
    ]
    assert "metafo/m3/dc1" in monitor.names()
    assert not any(name.startswith("m3cname") for name in monitor.names())  # service_types []


def test_a_cname_datacenter_down_fails_over(tmp_path: Path) -> None:
    # 018admin/044admin.t: m1cname.example.net./up => DOWN/29 answers dc2, TTL 29.
    resolvers, _ = load(CNAME_DC_CONFIG, tmp_path)
    assert resolvers.resolve("metafo", "m1", CLIENT, {}).cname == b"\x07m1cname\x07example\x03net\x00"
    down29 = {"m1cname.example.net./up": Sttl(down=True, ttl=29, forced=True)}
    m1 = resolvers.resolve("metafo", "m1", CLIENT, down29)
    assert (m1.cname, m1.v4, m1.ttl, m1.failed) == (None, (ip("10.0.0.1"),), 29, False)
    # A datacenter forced UP overrides its CNAME's state, TTL included.
    forced_up = {**down29, "metafo/m1/dc1": Sttl(down=False, forced=True)}
    m1 = resolvers.resolve("metafo", "m1", CLIENT, forced_up)
    assert (m1.cname is not None, m1.ttl, m1.failed) == (True, TTL_MAX, False)
    # Any of a resource's service types down takes the CNAME down.
    m2 = resolvers.resolve("metafo", "m2", CLIENT, {"m2cname.example.net./ext": Sttl(down=True, ttl=40)})
    assert (m2.ttl, m2.failed) == (40, True)
