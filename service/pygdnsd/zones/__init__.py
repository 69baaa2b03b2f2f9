"""Zone data: names, master-file parsing, rdata encoding, the zone tree and its checks."""
