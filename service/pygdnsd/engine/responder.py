"""The engine's entry point: one DNS query's bytes in, the response's bytes out.

Transports call ``Responder.respond`` and send what it returns (or nothing,
for ``None``). It never touches a socket, a clock it was not given, or
global state, so it is tested by feeding it bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pygdnsd.engine.stats import Stats
from pygdnsd.zones.model import ZoneSet


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The config options that shape answers (see ``man gdnsd.config``)."""

    chaos_response: bytes = b"gdnsd"
    nsid: bytes | None = None
    max_edns_response: int = 1232
    max_edns_response_v6: int = 1232
    experimental_no_chain: bool = True
    edns_client_subnet: bool = True
    disable_cookies: bool = False
    max_nocookie_response: int = 0
    # Value of the edns-tcp-keepalive option we send, in units of 100 ms.
    tcp_keepalive: int = 370
    tcp_pad: bool = False
    # 32-byte secret for server cookies; the daemon loads or creates it.
    cookie_secret: bytes = b"\x00" * 32


class Responder:
    """Answers queries from one ``ZoneSet`` (swapped atomically by ``set_zones``)."""

    def __init__(self, zones: ZoneSet, settings: EngineSettings, stats: Stats) -> None:
        self.zones = zones
        self.settings = settings
        self.stats = stats

    def set_zones(self, zones: ZoneSet) -> None:
        """Serve ``zones`` from the next query on (a single reference swap)."""
        self.zones = zones

    def respond(self, query: bytes, client_ip: bytes, tcp: bool, closing: bool = False) -> bytes | None:
        """The response to ``query``, or ``None`` when no response must be sent.

        ``client_ip`` is the packed source address (4 or 16 bytes): it selects
        IPv4/IPv6 limits and feeds server cookies. ``tcp`` lifts the UDP size
        limits and enables the edns-tcp-keepalive option. ``closing`` asks for
        a keepalive timeout of 0, telling a TCP client we are about to close.
        """
        raise NotImplementedError("engine under construction")
