@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
