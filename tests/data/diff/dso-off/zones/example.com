$TTL 86400
@       SOA ns1 hostmaster 1 7200 1800 259200 900
@       NS  ns1
@       NS  ns2
ns1     A   192.0.2.1
ns2     A   192.0.2.2
www     A   192.0.2.10
; the client address the server was given (relayed by a PROXY header)
who     60  DYNA reflect!dns
; an answer of more than one 468-byte padding block
big     TXT "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        TXT "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
