@ 900 SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
null 300 DYNA null
reflect 300 DYNA reflect
reflect-dns 300 DYNA reflect!dns
reflect-edns 300 DYNA reflect!edns
reflect-both 300 DYNA reflect!both
static 300/60 DYNA static!s
static6 300 DYNA static!six
static-cn 300 DYNC static!cn
sf 300/10 DYNA simplefo!sf
sf-mx 300 DYNA simplefo!sf
sf-mx MX 10 mail.example.net.
sfweb 300/10 DYNA simplefo!sfweb
sfc 300/10 DYNC simplefo!sf
mf 300/10 DYNA multifo!mf
mfweb 300/10 DYNA multifo!mfweb
one 300/10 DYNA weighted!one
w 300/10 DYNA weighted!w
wc 300/10 DYNC weighted!wc
mt 300/10 DYNA metafo!mt
mtlist 300/10 DYNA metafo!mtlist
mtref 300/10 DYNA metafo!mtref
* 300/10 DYNA multifo!mf
cn CNAME sf
