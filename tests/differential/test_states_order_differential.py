"""``gdnsdctl states`` lists every state in gdnsd 3.8.1's order, which operators' scripts read.

Observed with Debian's gdnsd: geoip's names (maps, then each resource),
then metafo's; a resource's datacenters in its ``dcmap``'s order (not the
``datacenters`` list's), each followed by its CNAME's monitored states;
then the address plugins configured under ``plugins`` in the config's
order, their own resources before those geoip and metafo synthesized; then
the plugins only geoip's or metafo's datacenters use, in the order they
first did. Both daemons run each config and Debian's gdnsdctl asks both.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REAL_GDNSDCTL, ServerProcess

HEAD = """options => {
  listen => [ 127.0.0.1 ]
  dns_port => @PORT@
  run_dir => @RUN_DIR@
  state_dir => @STATE_DIR@
}
service_types => {
  ext2 => { plugin => extfile, file => @EXT@/ext2, direct => true }
  ext3 => { plugin => extfile, file => @EXT@/ext3, direct => true }
}
"""

# Address plugins configured out of alphabetical order; CNAMEs with two service
# types; dcmaps out of their datacenters' order; a metafo synthesized by geoip.
CONFIGURED = """plugins => {
 weighted => { wres => { service_types => ext3, w1 => [ 192.0.2.60, 10 ], w2 => [ 192.0.2.61, 20 ] } }
 simplefo => { sf => { primary => 192.0.2.40, secondary => 192.0.2.41 } }
 multifo => { mf => { service_types => [ ext3 ], a => 192.0.2.30, b => 192.0.2.31 } }
 geoip => {
  service_types => ext3
  maps => {
   three => { datacenters => [ na, eu, ap ], nets => { 10.0.0.0/8 => [ eu ] } }
   two => { datacenters => [ z1, z2 ], nets => { 10.0.0.0/8 => [ z2 ] } }
  }
  resources => {
   gres => {
    map => three
    service_types => [ ext2, ext3 ]
    dcmap => { na => na.example.net., eu => 192.0.2.2, ap => ap.example.net. }
   }
   gres2 => {
    map => three
    dcmap => { na => [ 192.0.2.11, 192.0.2.12 ], eu => eu2.example.net., ap => { lb1 => 192.0.2.14, lb2 => 192.0.2.15 } }
   }
   gres3 => {
    map => two
    dcmap => { z1 => { plugin => metafo, datacenters => [ q1, q2 ], dcmap => { q1 => q1.example.net., q2 => 192.0.2.51 } }, z2 => %metafo!mres }
   }
   gres4 => { map => two, dcmap => { z2 => z2.example.net., z1 => %simplefo!sf } }
  }
 }
 metafo => {
  service_types => [ ext2, ext3 ]
  resources => {
   mres => { datacenters => [ m1, m2, m3 ], dcmap => { m3 => m3.example.net., m1 => m1.example.net., m2 => 192.0.2.7 } }
   mres2 => { datacenters => [ x, y ], dcmap => { x => %multifo!mf, y => y.example.net. }, service_types => [ ext3 ] }
  }
 }
}
"""
CONFIGURED_ZONE = """g DYNC geoip!gres
g2 DYNC geoip!gres2
g3 DYNC geoip!gres3
g4 DYNC geoip!gres4
m DYNC metafo!mres
m2 DYNC metafo!mres2
w DYNA weighted!wres
"""

# multifo only synthesized (after the configured simplefo and weighted);
# addresses in dcmaps out of order; a weighted datacenter in geoip.
SYNTHESIZED = """plugins => {
 simplefo => { sf => { primary => 192.0.2.40, secondary => 192.0.2.41 } }
 metafo => {
  resources => {
   mres => { datacenters => [ m1, m2, m3 ], dcmap => { m3 => 192.0.2.73, m1 => 192.0.2.71, m2 => m2.example.net. }, service_types => ext2 }
  }
 }
 geoip => {
  maps => { three => { datacenters => [ z1, z2, z3 ], nets => { 10.0.0.0/8 => [ z2 ] } } }
  resources => {
   gres4 => { map => three, dcmap => { z2 => 192.0.2.82, z3 => z3.example.net., z1 => 192.0.2.81 } }
   gres5 => {
    map => three
    dcmap => {
     z3 => { plugin => metafo, datacenters => [ q2, q1 ], dcmap => { q1 => 192.0.2.91, q2 => 192.0.2.92 } }
     z2 => { plugin => weighted, ww => [ 192.0.2.95, 5 ] }
     z1 => 192.0.2.93
    }
   }
  }
 }
 weighted => { wres => { w1 => [ 192.0.2.60, 10 ], w2 => [ 192.0.2.61, 20 ] } }
}
"""
SYNTHESIZED_ZONE = """g4 DYNC geoip!gres4
g5 DYNC geoip!gres5
m DYNC metafo!mres
w DYNA weighted!wres
s DYNA simplefo!sf
"""

SITES = {"configured": (CONFIGURED, CONFIGURED_ZONE), "synthesized": (SYNTHESIZED, SYNTHESIZED_ZONE)}


def states(server: ServerProcess) -> str:
    assert server.config_dir is not None
    done = subprocess.run(
        [str(REAL_GDNSDCTL), "-c", str(server.config_dir), "states"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("site", sorted(SITES))
def test_states_are_listed_in_gdnsds_order(site: str, tmp_path: Path) -> None:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"
    plugins, names = SITES[site]
    src = tmp_path / "src"
    (src / "zones").mkdir(parents=True)
    ext = tmp_path / "ext"
    ext.mkdir()
    (src / "config").write_text((HEAD + plugins).replace("@EXT@", str(ext)))
    (src / "zones" / "example.com").write_text(
        "@ SOA ns1 hostmaster 1 7200 1800 259200 900\n@ NS ns1\nns1 A 192.0.2.200\n" + names
    )
    with ServerProcess("gdnsd", src, tmp_path / "gdnsd") as theirs:
        expected = states(theirs)
    with ServerProcess("pygdnsd", src, tmp_path / "ours") as ours:
        actual = states(ours)
    assert expected.count("\n") > 20  # the config's states are there to compare
    assert actual == expected
