; Every kind of name a challenge may meet: none, a delegation, wildcards, CNAMEs
; (to a missing name, to one with TXT, out of the zone), other data, static TXT.
$TTL 86400
@ SOA ns1 dns-admin 1 7200 1800 259200 900
@ NS ns1
ns1 A 192.0.2.42
sub NS ns.sub
ns.sub A 192.0.2.50
*.wild A 192.0.2.60
*.wildtxt TXT "wildtxt"
_acme-challenge.cn CNAME _acme-challenge.target
target A 192.0.2.70
_acme-challenge.cn2 CNAME _acme-challenge.t2
_acme-challenge.t2 TXT "t2static"
_acme-challenge.cnout CNAME _acme-challenge.example.net.
cn3 CNAME t3
t3 A 192.0.2.99
_acme-challenge.mx MX 10 ns1
deep.ent.x A 192.0.2.80
_acme-challenge.txtonly TXT "static"
_acme-challenge.other A 192.0.2.43
