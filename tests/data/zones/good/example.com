; A zone using every record type and directive gdnsd 3.8.1 reads.
$TTL 1h
@ 1D IN SOA NS1 Hostmaster.Example.COM. (
        2024010101 ; serial
        2h         ; refresh
        30M        ; retry
        3w         ; expire
        2d )       ; ncache: clamped to max_ncache_ttl (10800)
@ NS ns1
  NS ns2.example.com.
ns1 A 192.0.2.1
ns2 IN 600 A 192.0.2.2
ns2 600 IN AAAA 2001:DB8::2
@ 7200 MX 10 Mail
@ TXT "v=spf1 -all" "two" abc\ def
mail A 192.0.2.3
mail A 192.0.2.3
long TXT "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
_sip._udp 1800 SRV 5 500 5060 sip.example.net.
naptr NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" .
@ CAA 0 issue "letsencrypt.org"
x.y.z 0 A 192.0.2.4
big 99999999 A 192.0.2.5
rev PTR host.example.net.
alias CNAME Mail
wild.* A 192.0.2.6
* MX 20 mail
t99 TYPE99 \# 6 05763d737066
escaped TXT "quote\"semi\;dec\065"
_acme-challenge 300 TXT "token"
ttlmix 300 A 192.0.2.7
ttlmix 600 A 192.0.2.8
sub NS ns.sub
sub NS ns.example.net.
ns.sub A 192.0.2.9
unused.sub A 192.0.2.10
other NS ns.example.net.
ns.example.net. A 192.0.2.11
$ORIGIN o
a A 192.0.2.12
$ORIGIN p.@Z
b A 192.0.2.13
$INCLUDE inc/part f
c A 192.0.2.14
