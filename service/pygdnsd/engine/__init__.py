"""The query engine, sans-IO: DNS query bytes in, response bytes out. No sockets here."""
