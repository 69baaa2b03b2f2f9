@ 300 SOA ns3 hostmaster 1 7200 1800 259200 300
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
www A 192.0.2.3
