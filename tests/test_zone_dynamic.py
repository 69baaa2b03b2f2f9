"""DYNA/DYNC in zone files: placement rules, plugin checks and MAX/MIN TTLs.

Every case runs twice: through our loader (config -> ``build_dynamic`` ->
``load_zones(..., dynamic=resolvers)``) and through Debian's ``gdnsd
checkconf`` on the same config dir, which must accept or refuse it alike
(a fragment of each server's message is checked). Warnings are compared the
same way for the TTL clamps.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import reference_results
from conftest import REAL_GDNSD
from pygdnsd.config.options import load_config
from pygdnsd.errors import ConfigError, ZoneError
from pygdnsd.plugins.setup import DynamicSetup, build_dynamic
from pygdnsd.zones import fastload, model, names
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.settings import ZoneSettings

PLUGINS = """
service_types => {
  ext => { plugin => extfile, file => @EXTFILE@, direct => true }
}
plugins => {
  simplefo => { service_types => ext, sf => { primary => 10.0.0.1, secondary => 10.0.0.2 } }
  multifo => { service_types => ext, mf => [ 10.0.0.1, 10.0.0.2, 10.0.0.3 ] }
  weighted => {
    service_types => ext
    w => { a => [ 10.0.0.1, 10 ], b => [ 10.0.0.2, 10 ] }
    wc => { a => [ a.example.net., 10 ] }
  }
  metafo => { resources => { mt => { datacenters => [ d1, d2 ], dcmap => { d1 => 10.0.0.1, d2 => 10.0.0.2 }, service_types => ext } } }
  static => { s => 10.9.9.9, six => 2001:db8::1, cn => target.example.net. }
}
"""

# SOA TTL at its MINIMUM so the only warnings are the ones a case causes.
HEAD = """@ 900 SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
"""
FIRST_LINE = HEAD.count("\n") + 1
APEX = names.from_text("example.com.")


def config_dir(tmp_path: Path, body: str, options: str = "") -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "zones").mkdir(parents=True)
    extfile = tmp_path / "extdata"
    extfile.write_text("")
    (cfg / "config").write_text(
        "options => {\n"
        f"  listen => [127.0.0.1]\n  run_dir => {tmp_path / 'run'}\n  state_dir => {tmp_path / 'state'}\n"
        f"  {options}\n}}\n" + PLUGINS.replace("@EXTFILE@", str(extfile))
    )
    (cfg / "zones" / "example.com").write_text(HEAD + body + "\n")
    return cfg


def ours(cfg: Path) -> tuple[model.ZoneSet, DynamicSetup]:
    config = load_config(cfg)
    setup = build_dynamic(config)
    return load_zones(cfg / "zones", ZoneSettings.from_config(config), setup.resolvers), setup


def theirs(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REAL_GDNSD), "-c", str(cfg), "checkconf"],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def reference_installed() -> None:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"


def www(zones: model.ZoneSet, owner: str = "www") -> dict[int, model.RRset]:
    name = APEX if owner == "@" else names.from_text(owner, APEX)
    return zones.zones[APEX].nodes[name]


# -- refused ---------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    name: str
    body: str
    line: int  # of the zone file, counted from the first line after HEAD
    ours: str
    theirs: str = ""  # gdnsd's words, where they are not ours
    options: str = ""


BAD = [
    Bad("dync_beside_mx", "www 300 DYNC static!cn\nwww MX 10 ns1", 1,
        "DYNC not allowed alongside other data"),
    Bad("mx_then_dync", "www MX 10 ns1\nwww 300 DYNC static!cn", 2, "DYNC not allowed alongside other data"),
    Bad("two_dync", "www 300 DYNC static!cn\nwww 300 DYNC static!cn", 2,
        "DYNC not allowed alongside other data"),
    Bad("dyna_and_dync", "www 300 DYNA static!s\nwww 300 DYNC static!cn", 2,
        "DYNC not allowed alongside other data"),
    Bad("cname_and_dync", "www CNAME foo\nwww 300 DYNC static!cn", 2,
        "DYNC not allowed alongside other data"),
    Bad("dync_at_apex", "@ 300 DYNC static!cn", 1, "DYNC not allowed alongside other data"),
    Bad("two_dyna", "www 300 DYNA static!s\nwww 300 DYNA static!six", 2,
        "DYNA defined twice for the same name"),
    Bad("dyna_beside_a", "www A 192.0.2.9\nwww 300 DYNA static!s", 1,
        "DYNA cannot co-exist at the same name as A"),
    Bad("dyna_beside_aaaa", "www 300 DYNA static!s\nwww AAAA 2001:db8::9", 2,
        "DYNA cannot co-exist at the same name as AAAA"),
    Bad("dyna_beside_cname", "www CNAME foo\nwww 300 DYNA static!s", 2,
        "CNAME not allowed alongside other data"),
    Bad("dync_below_cut", "sub NS ns.sub\nns.sub A 192.0.2.9\nx.sub 300 DYNC static!cn", 3,
        "inside a delegated subzone"),
    Bad("dyna_as_glue", "sub NS ns.sub\nns.sub 300 DYNA static!s", 1, "cannot have DYNA addresses"),
    Bad("unknown_plugin", "www 300 DYNA nosuch!x", 1, "no such plugin 'nosuch'", "No such plugin 'nosuch'"),
    Bad("monitor_plugin", "www 300 DYNA extfile!x", 1,
        "no such plugin 'extfile'", "DYNA RR refers to a non-resolver plugin"),
    Bad("unknown_resource", "www 300 DYNA simplefo!nosuch", 1, "rejected resource name 'nosuch'"),
    Bad("resource_required", "www 300 DYNA static", 1,
        "rejected resource name ''", "rejected resource name '(null)'"),
    Bad("reflect_bad_mode", "www 300 DYNA reflect!zzz", 1, "rejected resource name 'zzz'"),
    Bad("metafo_unknown", "www 300 DYNA metafo!nosuch", 1, "rejected resource name 'nosuch'"),
    Bad("static_cname_as_dyna", "www 300 DYNA static!cn", 1,
        "can only be used by DYNC", "rejected resource name 'cn'"),
    Bad("weighted_cname_as_dyna", "www 300 DYNA weighted!wc", 1,
        "can only be used by DYNC", "rejected resource name 'wc'"),
    Bad("empty_resource", "www 300 DYNA null!", 1, "must be plugin!resource", "General parse error"),
    Bad("two_bangs", "www 300 DYNA static!s!t", 1, "must be plugin!resource", "General parse error"),
    Bad("extra_token", "www 300 DYNA static!s extra", 1, "DYNA", "General parse error"),
    Bad("min_without_number", "www 300/ DYNA static!s", 1, "invalid DYNA/DYNC TTL", "General parse error"),
    Bad("min_ttl_on_a", "www 300/30 A 192.0.2.9", 1, "TTL", "General parse error"),
    Bad("out_of_zone", "foo.example.net. 300 DYNA static!s", 1,
        "not within this zonefile's zone", "is not within this zonefile's zone"),
    Bad("strict_min_too_small", "www 300/1 DYNA simplefo!sf", 1,
        "DYNA Min-TTL /1 too small, clamped to min_ttl setting of 5",
        "DYNA Min-TTL /1 too small",
        options="zones_strict_data => true"),
    Bad("strict_min_above_max", "www 300/400 DYNA simplefo!sf", 1,
        "DYNA Min-TTL /400 larger than Max-TTL 300, clamping to Max-TTL",
        "DYNA Min-TTL /400 larger than Max-TTL 300",
        options="zones_strict_data => true"),
    Bad("strict_unused_dyna_glue", "sub NS ns.sub\nns.sub A 192.0.2.9\nsub 300 DYNA static!s", 3,
        "glue address(es) at domainname 'sub.example.com.' are unused",
        "are unused and ignored",
        options="zones_strict_data => true"),
]


@pytest.mark.parametrize("case", BAD, ids=lambda case: case.name)
def test_bad_dynamic_zone_refused_by_both(case: Bad, tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, case.body, case.options)
    with pytest.raises(ZoneError) as info:
        ours(cfg)
    err = info.value
    assert err.path == str(cfg / "zones" / "example.com")
    assert err.line == FIRST_LINE + case.line - 1
    assert case.ours in err.problem
    assert str(err).startswith(f"{err.path}:{err.line}: ")
    result = theirs(cfg)
    assert result.returncode != 0, result.stderr
    assert (case.theirs or case.ours) in result.stderr


def test_strict_cases_load_without_strict(tmp_path: Path) -> None:
    """Each strict_* case is refused only because of zones_strict_data, in both servers."""
    for case in (c for c in BAD if c.options):
        work = tmp_path / case.name
        cfg = config_dir(work, case.body)
        ours(cfg)
        assert theirs(cfg).returncode == 0, case.name


def test_dyna_refused_without_plugins(tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, "www 300 DYNA static!s")
    with pytest.raises(ZoneError, match="DYNA/DYNC need the monitoring/plugins support") as info:
        load_zones(cfg / "zones", ZoneSettings())
    assert info.value.line == FIRST_LINE


# -- accepted --------------------------------------------------------------


@dataclass(frozen=True)
class Good:
    name: str
    body: str
    owner: str
    rtype: int
    ttl: int
    min_ttl: int
    plugin: str
    resource: str


GOOD = [
    Good("default_min_is_half", "www 300 DYNA simplefo!sf", "www", model.DYNA, 300, 150, "simplefo", "sf"),
    Good("explicit_min", "www 300/30 DYNA multifo!mf", "www", model.DYNA, 300, 30, "multifo", "mf"),
    Good("zero_min_is_half", "www 300/0 DYNA weighted!w", "www", model.DYNA, 300, 150, "weighted", "w"),
    Good("units", "www 1h/1m DYNA metafo!mt", "www", model.DYNA, 3600, 60, "metafo", "mt"),
    Good("class_then_ttl", "www IN 300/30 DYNA static!s", "www", model.DYNA, 300, 30, "static", "s"),
    Good("ttl_then_class", "www 300/30 IN DYNA static!s", "www", model.DYNA, 300, 30, "static", "s"),
    Good("default_ttl", "$TTL 600\nwww dyna static!six", "www", model.DYNA, 600, 300, "static", "six"),
    Good("plugin_alone", "www 300 DYNA null", "www", model.DYNA, 300, 150, "null", ""),
    Good("reflect_alone", "www 300 DYNA reflect", "www", model.DYNA, 300, 150, "reflect", ""),
    Good("reflect_mode", "www 300 DYNA reflect!best", "www", model.DYNA, 300, 150, "reflect", "best"),
    Good("dyna_beside_mx", "www 300 DYNA simplefo!sf\nwww MX 10 ns1", "www", model.DYNA, 300, 150,
         "simplefo", "sf"),
    Good("dyna_at_apex", "@ 300 DYNA static!s", "@", model.DYNA, 300, 150, "static", "s"),
    Good("dyna_wildcard", "* 300 DYNA static!s", "*", model.DYNA, 300, 150, "static", "s"),
    Good("dync_wildcard", "* 300 DYNC static!cn", "*", model.DYNC, 300, 150, "static", "cn"),
    Good("dync_cname_resource", "www 300/60 DYNC weighted!wc", "www", model.DYNC, 300, 60, "weighted", "wc"),
    Good("dync_address_resource", "www 300 DYNC static!s", "www", model.DYNC, 300, 150, "static", "s"),
    Good("cname_to_dync", "x CNAME www\nwww 300 DYNC static!cn", "www", model.DYNC, 300, 150, "static", "cn"),
    Good("ns_target_in_zone_not_delegated", "sub NS foo\nfoo 300 DYNA static!s", "foo", model.DYNA, 300, 150,
         "static", "s"),
]


@pytest.mark.parametrize("case", GOOD, ids=lambda case: case.name)
def test_good_dynamic_zone(case: Good, tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, case.body)
    zones, _ = ours(cfg)
    node = www(zones, case.owner)
    record = node[case.rtype]
    assert record == model.DynamicRRset(case.rtype, case.ttl, (), case.plugin, case.resource, case.min_ttl)
    result = theirs(cfg)
    assert result.returncode == 0, result.stderr


def test_dyna_keeps_other_types(tmp_path: Path) -> None:
    zones, _ = ours(config_dir(tmp_path, "www 300 DYNA simplefo!sf\nwww MX 10 ns1\nwww TXT hi"))
    assert set(www(zones)) == {model.DYNA, model.MX, model.TXT}


def test_mx_target_with_dyna_has_addresses_dync_not(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """gdnsd warns about an MX whose same-zone target has only a DYNC, not only a DYNA."""
    with caplog.at_level(logging.WARNING, logger="pygdnsd.zones"):
        ours(config_dir(tmp_path / "a", "x MX 10 www\nwww 300 DYNA static!s"))
    assert "has no addresses" not in caplog.text
    assert "has no addresses" not in theirs(tmp_path / "a" / "cfg").stderr
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pygdnsd.zones"):
        ours(config_dir(tmp_path / "b", "x MX 10 www\nwww 300 DYNC static!cn"))
    assert "same-zone target 'www.example.com.' has no addresses" in caplog.text
    assert "same-zone target 'www.example.com.' has no addresses" in theirs(tmp_path / "b" / "cfg").stderr


@pytest.mark.parametrize(
    ("body", "ttl", "min_ttl", "warnings"),
    [
        ("www 1/1 DYNA simplefo!sf", 5, 5,
         ["DYNA TTL 1 too small, clamped to min_ttl setting of 5", "DYNA Min-TTL /1 too small, clamped to min_ttl setting of 5"]),
        ("www 4/3 DYNA simplefo!sf", 5, 5,
         ["DYNA TTL 4 too small, clamped to min_ttl setting of 5", "DYNA Min-TTL /3 too small, clamped to min_ttl setting of 5"]),
        ("www 0 DYNA simplefo!sf", 5, 5,
         ["DYNA TTL 0 too small, clamped to min_ttl setting of 5", "DYNA Min-TTL /0 too small, clamped to min_ttl setting of 5"]),
        ("www 300/400 DYNA simplefo!sf", 300, 300, ["DYNA Min-TTL /400 larger than Max-TTL 300, clamping to Max-TTL"]),
        ("www 99999999 DYNA simplefo!sf", 3600000, 3600000,
         ["DYNA TTL 99999999 too large, clamped to max_ttl setting of 3600000",
          "DYNA Min-TTL /49999999 larger than Max-TTL 3600000, clamping to Max-TTL"]),
        ("www 300/1 DYNC static!cn", 300, 5, ["DYNC Min-TTL /1 too small, clamped to min_ttl setting of 5"]),
    ],
)
def test_ttl_clamps_warn_like_gdnsd(
    body: str, ttl: int, min_ttl: int, warnings: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config_dir(tmp_path, body)
    with caplog.at_level(logging.WARNING, logger="pygdnsd.zones"):
        zones, _ = ours(cfg)
    record = next(iter(www(zones).values()))
    assert isinstance(record, model.DynamicRRset)
    assert (record.ttl, record.min_ttl) == (ttl, min_ttl)
    ours_said = [r.getMessage() for r in caplog.records]
    result = theirs(cfg)
    assert result.returncode == 0, result.stderr
    for warning in warnings:
        assert any(warning in line for line in ours_said), (warning, ours_said)
        assert warning in result.stderr
    assert len(ours_said) == len(warnings)


def test_unused_dyna_glue_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_dir(tmp_path, "sub NS ns.sub\nns.sub A 192.0.2.9\nsub 300 DYNA static!s\nx.sub 300 DYNA static!s")
    with caplog.at_level(logging.WARNING, logger="pygdnsd.zones"):
        zones, _ = ours(cfg)
    zone = zones.zones[APEX]
    assert model.DYNA not in zone.nodes[names.from_text("sub", APEX)]
    assert model.DYNA not in zone.nodes.get(names.from_text("x.sub", APEX), {})
    assert "glue address(es) at domainname 'x.sub.example.com.' are unused" in caplog.text
    assert "at domainname 'x.sub.example.com.' are unused and ignored" in theirs(cfg).stderr


# -- the fast path ---------------------------------------------------------


def test_fast_path_loads_dynamic_zones(tmp_path: Path) -> None:
    """DYNA/DYNC zones are checked and built by the fast path, as the reference path builds them."""
    cfg = config_dir(tmp_path, "www 300/30 DYNA simplefo!sf\nx MX 10 www\nc 300 DYNC static!cn")
    config = load_config(cfg)
    setup = build_dynamic(config)
    settings = ZoneSettings.from_config(config)
    path = str(cfg / "zones" / "example.com")
    fast = fastload.load_zone(path, APEX, settings, plugins=setup.resolvers)
    assert fast == reference_results.reference(Path(path), APEX, settings, setup.resolvers)
    assert www(model.ZoneSet({APEX: fast}))[model.DYNA] == model.DynamicRRset(model.DYNA, 300, (), "simplefo", "sf", 30)


def test_dynamic_zone_among_many_parallel_zones(tmp_path: Path) -> None:
    """Enough zones for the forked workers: the DYNA zone is still checked and built."""
    cfg = config_dir(tmp_path, "www 300/30 DYNA simplefo!sf")
    filler = HEAD + "".join(f"h{i} A 192.0.2.{i % 250 + 1}\n" for i in range(3000))
    for i in range(20):
        (cfg / "zones" / f"z{i}.example").write_text(filler)
    config = load_config(cfg)
    setup = build_dynamic(config)
    settings = ZoneSettings.from_config(config)
    assert sum(p.stat().st_size for p in (cfg / "zones").iterdir()) > 1 << 20  # parallel.BATCH_BYTES
    assert settings.threads == 2
    zones = load_zones(cfg / "zones", settings, setup.resolvers)
    assert www(zones)[model.DYNA] == model.DynamicRRset(model.DYNA, 300, (), "simplefo", "sf", 30)
    (cfg / "zones" / "example.com").write_text(HEAD + "www 300 DYNA simplefo!nosuch\n")
    with pytest.raises(ZoneError, match="rejected resource name 'nosuch'"):
        load_zones(cfg / "zones", settings, setup.resolvers)


# -- build_dynamic ---------------------------------------------------------


def test_build_dynamic_registers_monitored_resources(tmp_path: Path) -> None:
    _, setup = ours(config_dir(tmp_path, "www 300 DYNA simplefo!sf"))
    assert "10.0.0.1/ext" in setup.monitor.names()
    assert setup.resolvers.monitor is setup.monitor


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ("service_types => { bad => { plugin => nosuch } }", "bad"),
        # gdnsd only reads a service type's options when a plugin uses it.
        ("service_types => { bad => { plugin => tcp_connect, port => 80, wrong => 1 } }\n"
         "plugins => { multifo => { service_types => bad, mf => [ 127.0.0.1 ] } }", "wrong"),
        ("plugins => { nosuch => { } }", "nosuch"),
        ("plugins => { simplefo => { service_types => missing, sf => { primary => 10.0.0.1, secondary => 10.0.0.2 } } }",
         "missing"),
        ("plugins => { simplefo => { sf => { primary => 10.0.0.1 } } }", "secondary"),
    ],
)
def test_build_dynamic_errors_name_file_and_key(section: str, fragment: str, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    (cfg / "zones").mkdir(parents=True)
    (cfg / "config").write_text(
        f"options => {{ listen => [127.0.0.1], run_dir => {tmp_path / 'run'}, state_dir => {tmp_path / 'state'} }}\n"
        + section + "\n"
    )
    with pytest.raises(ConfigError) as info:
        build_dynamic(load_config(cfg))
    message = str(info.value)
    assert message.startswith(str(cfg / "config")), message
    assert fragment in message
    shutil.copytree(cfg, tmp_path / "theirs")
    assert theirs(tmp_path / "theirs").returncode != 0


# -- DYNC CNAMEs into the zone ---------------------------------------------


@dataclass
class FakePlugins:
    """Accepts every target; ``targets`` are the CNAMEs each resource may answer with."""

    targets: dict[str, tuple[bytes, ...]]

    def check(self, plugin: str, resource: str, dync: bool) -> None:
        pass

    def cname_targets(self, plugin: str, resource: str) -> tuple[bytes, ...]:
        return self.targets.get(resource, ())


def test_dync_cname_into_its_own_zone_is_refused(tmp_path: Path) -> None:
    """gdnsd: "Resource 'wcin' CNAME value 'www.example.com.' cannot be used within zone 'example.com.'"."""
    cfg = config_dir(tmp_path, "x 300 DYNC weighted!wcin\ny 300 DYNC weighted!wc")
    plugins = FakePlugins({"wcin": (names.from_text("www.example.com."),), "wc": (names.from_text("a.example.net."),)})
    with pytest.raises(ZoneError) as info:
        load_zones(cfg / "zones", ZoneSettings(), plugins)
    assert "CNAME value 'www.example.com.' cannot be used within zone 'example.com.'" in info.value.problem
    assert info.value.line == FIRST_LINE
    (cfg / "zones" / "example.com").write_text(HEAD + "y 300 DYNC weighted!wc\n")
    load_zones(cfg / "zones", ZoneSettings(), plugins)


def test_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, "$INCLUDE inc/dyn")
    (cfg / "zones" / "inc").mkdir()
    (cfg / "zones" / "inc" / "dyn").write_text("ok 300 DYNA static!s\nbad 300 DYNA simplefo!nosuch\n")
    with pytest.raises(ZoneError) as info:
        ours(cfg)
    assert (info.value.path, info.value.line) == (str(cfg / "zones" / "inc" / "dyn"), 2)
    assert "rejected resource name 'nosuch'" in info.value.problem
    assert "rejected resource name 'nosuch'" in theirs(cfg).stderr
