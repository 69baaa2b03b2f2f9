$TTL 600
@       SOA ns1.sub.example.com. hostmaster.example.com. 1 7200 1800 259200 300
        NS  ns1
        A   192.0.2.200
ns1     A   192.0.2.201
www     A   192.0.2.202
