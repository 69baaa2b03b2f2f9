$TTL 86400
; The SOA's own TTL is its ncache field (900): gdnsd clamps a longer one to
; ncache (negative answers carry the SOA, RFC 2308 section 5) and warns on
; every load.
@ 900   SOA ns1 hostmaster (
            2026113001 ; serial
            7200       ; refresh
            1800       ; retry
            259200     ; expire
            900 )      ; ncache
        NS  ns1
        NS  ns2
        MX  10 mail
ns1     A   192.0.2.1
ns2     A   192.0.2.2
www     A   192.0.2.10
        AAAA 2001:db8::10
mail    A   192.0.2.25
ftp     CNAME www
*.users TXT "a wildcard record"
