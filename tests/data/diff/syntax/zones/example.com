  ; an indented comment first, then a blank owner before any owner: the zone
$TTL 86400
	SOA ns1 dns-admin (
	1      ; serial
	7200   ; refresh
	30M    ; retry
	3D     ; expire
        900    ; ncache
)
	NS	ns1
	IN 86400 NS	ns2
www	3600	A	192.0.2.1 ; (a parenthesis in a comment
www	1H	A	192.0.2.2 ; ends at the end of the line
ns1	 	A 	 192.0.2.5
ns2 A 192.0.2.6
_http._tcp	2W	srv	5 500 80 www
multi	TXT	"foo bar" "asdf""xyz
two more
lines" plain
esc	TXT	"\010\000\0259 quoted \"\"\"\\"	"a;b"
paren	TXT	( "a ( b" ; a comment (
	"c
d" )
$INCLUDE inc/part sub
	TXT "after the include: paren again"
last A 192.0.2.8
$ORIGIN deep.@Z
	AAAA 2001:db8::8 ; $ORIGIN keeps the owner: last
inner TXT "inner.deep"
