"""pygdnsd: an authoritative DNS server compatible with gdnsd 3."""

__version__ = "0.1.0"
