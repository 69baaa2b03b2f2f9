"""Socket I/O: listening sockets, the UDP and TCP serving loops."""
