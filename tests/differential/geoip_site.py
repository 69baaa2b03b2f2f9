"""The geoip differential site: one config dir both daemons run, its databases generated.

Maps cover gdnsd-plugin-geoip(8)'s map keys (a City hierarchy with
subdivisions, cities and UTF-8 names, ``default`` at each level; auto mode
with ``auto_dc_limit`` and ``auto`` inside a map; GeoLite2 Country; the
tiny FakeCountry; nets inline and from a file; a map with no database;
``ignore_ecs``), resources its dcmap forms (one address, a list, a hash,
CNAMEs, ``%multifo!``, ``%static!``, a synthesized metafo, ``skip_first``,
undefined datacenters, datacenters down) and pinned ``RES/DC`` names.
"""

from __future__ import annotations

from pathlib import Path

import geoip_data

CONFIG = """
options => {
  listen => [ 127.0.0.1 ]
  dns_port => @PORT@
  run_dir => @RUN_DIR@
  state_dir => @STATE_DIR@
}
plugins => {
 multifo => { m_sa => [ 192.0.2.40, 192.0.2.41 ], m_sa6 => [ 2001:db8::40 ] }
 static => { s_ap => 192.0.2.50 }
 geoip => {
  undefined_datacenters_ok => true
  maps => {
   city => {
    geoip2_db => City.mmdb
    datacenters => [ us, eu, ap, sa ]
    map => {
     default => [ us, eu ]
     EU => {
      default => [ eu, us ]
      CZ => { 101 => [ ap ], 20 => { Brno => [ sa, eu ] } }
      FR => { Paris => [ ap, sa ], default => [ eu ] }
      CH => { Zürich => [ sa ] }
      DE => [ eu, ap ]
     }
     NA => { US => { Dallas => [ sa ], TX => [ ap ], NY => [ ap, us ], default => [ us, sa ] } }
     OC => { NZ => { OTA => [ sa ] }, default => [ ap ] }
     SA => { BR => { "São Paulo" => [ sa, us ] }, default => [ sa ] }
     AS => [ ap, us ]
     AF => { ZA => { GT => { Johannesburg => [ eu ] } } }
    }
    nets => {
     10.99.0.0/16 => [ ap ]
     10.3.64.0/18 => sa
     ::C633:6480/122 => [ sa, ap ]
     2001:db8:4000::/34 => [ sa ]
    }
   }
   auto => {
    geoip2_db => City.mmdb
    datacenters => [ us, eu, ap, sa ]
    auto_dc_coords => { us => [ 38.9, -77 ], eu => [ 50.1, 8.7 ], ap => [ 1.3, 103.9 ], sa => [ -23.5, -46.6 ] }
    auto_dc_limit => 2
    map => { EU => { CH => [ us ], FR => auto }, OC => [ sa, us, eu ] }
   }
   auto0 => {
    geoip2_db => City.mmdb
    datacenters => [ us, eu, ap, sa ]
    auto_dc_coords => { us => [ 38.9, -77 ], eu => [ 50.1, 8.7 ], ap => [ 1.3, 103.9 ] }
    auto_dc_limit => 0
   }
   country => {
    geoip2_db => GeoLite2-Country.mmdb
    datacenters => [ us, eu, ap, sa ]
    map => {
     NA => [ us, eu ], SA => [ sa, us ], EU => { default => [ eu, us ], GB => [ us, eu ], RU => [ ap, eu ] }
     AS => { default => [ ap, eu ], JP => [ ap, us ] }, OC => [ ap, us ], AF => [ eu, ap ]
    }
    nets => country.nets
   }
   fake => {
    geoip2_db => FakeCountry.mmdb
    datacenters => [ na, eu, ap ]
    map => { NA => [ na, ap ], EU => [ eu, na ] }
   }
   nodb => {
    datacenters => [ one, two, three ]
    nets => {
     0.0.0.0/2 => [ two, one ]
     96.0.0.0/3 => three
     127.0.0.0/9 => [ three, one ]
     127.0.0.64/26 => two
     10.0.0.0/8 => []
     2001:db8::/32 => [ two ]
     2001:db8:1::/48 => [ three, two ]
     ::/1 => one
    }
   }
   noecs => {
    geoip2_db => FakeCountry.mmdb
    datacenters => [ na, eu ]
    ignore_ecs => true
    map => { NA => [ na ], EU => [ eu ] }
   }
  }
  resources => {
   r_city => {
    map => city
    dcmap => {
     us => 192.0.2.1
     eu => [ 192.0.2.2, 192.0.2.3 ]
     ap => { lb1 => 192.0.2.4, lb2 => 192.0.2.5 }
     sa => %multifo!m_sa
    }
   }
   r_city6 => {
    map => city
    dcmap => { us => 2001:db8::1, eu => [ 2001:db8::2, 2001:db8::3 ], ap => 2001:db8::4, sa => %multifo!m_sa6 }
   }
   r_city_sf => {
    map => city
    skip_first => true
    dcmap => { us => 192.0.2.1, eu => 192.0.2.2, ap => 192.0.2.4, sa => 192.0.2.6 }
   }
   r_auto => {
    map => auto
    dcmap => { us => us.example.net., eu => eu.example.net., ap => ap.example.net., sa => sa.example.net. }
   }
   r_auto0 => {
    map => auto0
    dcmap => { us => 192.0.2.1, eu => 192.0.2.2, ap => %static!s_ap, sa => 192.0.2.6 }
   }
   r_country => {
    map => country
    service_types => up
    dcmap => {
     us => { service_types => down, lb1 => 192.0.2.1, lb2 => 192.0.2.11 }
     eu => [ 192.0.2.2 ]
     ap => 192.0.2.4
     sa => { plugin => metafo, datacenters => [ s1, s2 ], dcmap => { s1 => 192.0.2.6, s2 => 192.0.2.7 } }
    }
   }
   r_fake => {
    map => fake
    dcmap => { na => 192.0.2.1, eu => 192.0.2.2, ap => 192.0.2.4 }
   }
   r_nodb => {
    map => nodb
    dcmap => { one => 192.0.2.21, two => 192.0.2.22 }
   }
   r_noecs => {
    map => noecs
    dcmap => { na => 192.0.2.1, eu => 192.0.2.2 }
   }
   r_nest => {
    map => fake
    dcmap => { na => %geoip!r_city, eu => %geoip!r_country, ap => 192.0.2.4 }
   }
   r_nest_meta => {
    map => nodb
    dcmap => { one => %metafo!meta, two => %geoip!r_fake, three => %metafo!meta2 }
   }
   r_nest_down => {
    map => fake
    dcmap => { na => %geoip!r_noecs, eu => %metafo!meta3, ap => %geoip!r_nodb }
   }
   r_down => {
    map => city
    service_types => down
    dcmap => { us => 192.0.2.1, eu => 192.0.2.2, ap => 192.0.2.4, sa => 192.0.2.6 }
   }
  }
 }
 metafo => {
  resources => {
   meta => { datacenters => [ geo, last ], dcmap => { geo => %geoip!r_city, last => 192.0.2.99 } }
   meta3 => { datacenters => [ gdown, fake ], dcmap => { gdown => %geoip!r_down, fake => %geoip!r_fake } }
   meta2 => { datacenters => [ down, city, fake ], dcmap => { down => { service_types => down, lb => 192.0.2.98 }, city => %geoip!r_city_sf, fake => %geoip!r_fake } }
  }
 }
}
"""

COUNTRY_NETS = """
# a nets file: BGP-style overrides of GeoLite2 Country
1.0.0.0/8 => [ sa ]
8.8.8.0/24 => [ ap, us ]
2001:4860::/32 => [ eu ]
::ffff:0:0/0 => [ us ]
"""

ZONE = """@ SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
ns1 A 192.0.2.200
city DYNA geoip!r_city
city6 DYNA geoip!r_city6
citysf DYNA geoip!r_city_sf
cityeu DYNA geoip!r_city/eu
citysa DYNA geoip!r_city/sa
auto DYNC geoip!r_auto
autous DYNC geoip!r_auto/us
auto0 DYNA geoip!r_auto0
country DYNA geoip!r_country
countryus DYNA geoip!r_country/us
fake DYNA geoip!r_fake
nodb DYNA geoip!r_nodb
noecs DYNA geoip!r_noecs
meta DYNA metafo!meta
meta2 DYNA metafo!meta2
meta3 DYNA metafo!meta3
nest DYNA geoip!r_nest
nestmeta DYNA geoip!r_nest_meta
nestdown DYNA geoip!r_nest_down
nestna DYNA geoip!r_nest/na
nestdownap DYNA geoip!r_nest_down/ap
*.wild DYNA geoip!r_city
"""

# (name, qtype) asked with every client subnet.
NAMES = (
    ("city", 1),
    ("city6", 28),
    ("citysf", 1),
    ("auto", 1),
    ("auto0", 1),
    ("country", 1),
    ("fake", 1),
    ("nodb", 1),
    ("noecs", 1),
    ("meta", 1),
    ("meta2", 1),
    ("meta3", 1),
    ("nest", 1),
    ("nestmeta", 1),
    ("nestdown", 1),
    ("x.wild", 1),
)
# Asked less often: pinned datacenters, the other type.
PINNED = (
    ("cityeu", 1), ("citysa", 1), ("autous", 1), ("countryus", 1), ("city", 28), ("city6", 1), ("nestna", 1),
    ("nestdownap", 1),
)


def write_site(dest: Path) -> Path:
    """The config dir (with placeholders for ``conftest.prepare_config_dir``)."""
    geoip = dest / "geoip"
    geoip_data.write_city(geoip / "City.mmdb")
    geoip_data.geolite2_country(geoip / "GeoLite2-Country.mmdb")
    geoip_data.fake_country(geoip / "FakeCountry.mmdb")
    (geoip / "country.nets").write_text(COUNTRY_NETS)
    (dest / "zones").mkdir(parents=True)
    (dest / "zones" / "example.com").write_text(ZONE)
    (dest / "config").write_text(CONFIG)
    return dest
