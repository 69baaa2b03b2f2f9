; NS targets of every kind, for the apex and for delegations: in the zone and
; authoritative (ns1), below the delegation naming them (ns.sub), below another
; delegation (ns.deep.zzz, ns.sub for other), outside the zone with glue
; (ns.other.test.) and without (ns.nog.test.).
@       SOA ns1 dns-admin 1 7200 1800 259200 900
@       NS  ns1
@       NS  ns.sub
@       NS  ns.other.test.
@       NS  ns.nog.test.
ns1     A   192.0.2.1
ns.sub  A   192.0.2.2
ns.sub  AAAA 2001:db8::2
ns.other.test. A 192.0.2.3
sub     NS  ns.sub
sub     NS  ns.deep.zzz
other   NS  ns.sub
other   NS  ns1
other   NS  ns.other.test.
other   NS  ns.deep.zzz
zzz     NS  ns.deep.zzz
ns.deep.zzz A 192.0.2.9
www     A   192.0.2.10
toapex  CNAME @
tother  CNAME x.other
; a delegation whose glue overflows 512 bytes
big     NS  ns1.a-rather-long-server-name-for-testing.big
big     NS  ns2.a-rather-long-server-name-for-testing.big
big     NS  ns3.a-rather-long-server-name-for-testing.big
big     NS  ns4.a-rather-long-server-name-for-testing.big
big     NS  ns5.a-rather-long-server-name-for-testing.big
big     NS  ns6.a-rather-long-server-name-for-testing.big
ns1.a-rather-long-server-name-for-testing.big A 192.0.2.101
ns1.a-rather-long-server-name-for-testing.big AAAA 2001:db8::101
ns2.a-rather-long-server-name-for-testing.big A 192.0.2.102
ns2.a-rather-long-server-name-for-testing.big AAAA 2001:db8::102
ns3.a-rather-long-server-name-for-testing.big A 192.0.2.103
ns3.a-rather-long-server-name-for-testing.big AAAA 2001:db8::103
ns4.a-rather-long-server-name-for-testing.big A 192.0.2.104
ns4.a-rather-long-server-name-for-testing.big AAAA 2001:db8::104
ns5.a-rather-long-server-name-for-testing.big A 192.0.2.105
ns5.a-rather-long-server-name-for-testing.big AAAA 2001:db8::105
ns6.a-rather-long-server-name-for-testing.big A 192.0.2.106
ns6.a-rather-long-server-name-for-testing.big AAAA 2001:db8::106
