"""How the answers on one TCP connection are shaped: keepalive signalling and padding.

The TCP transport holds a few of these per listener (``TcpShape.of``) and
passes the one that fits the connection's state with each query:

* outside a DSO session, every answer carrying an OPT record carries our
  edns-tcp-keepalive option (RFC 7828): the listener's ``tcp_timeout``, or
  0 once we are shutting down, asking the client to close;
* inside a DSO session (RFC 8490) it carries none, and a client sending one
  commits a protocol error (``keepalive is None``);
* with ``tcp_pad``, every answer carrying an OPT record is padded to a
  multiple of 468 bytes (RFC 7830, RFC 8467's block size), as gdnsd pads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pygdnsd.engine import edns


@dataclass(frozen=True, slots=True)
class TcpShape:
    """One state of a TCP connection, as the engine needs it to answer."""

    keepalive: int | None  # units of 100 ms; None inside a DSO session
    pad: bool = False
    # Derived, built once: the keepalive option, and our OPT record for a
    # query whose OPT has no options (DO clear, DO set), unpadded.
    keepalive_option: bytes = field(init=False)
    bare_opts: tuple[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        option = b"" if self.keepalive is None else edns.option(edns.OPT_KEEPALIVE, struct.pack("!H", self.keepalive))
        object.__setattr__(self, "keepalive_option", option)
        object.__setattr__(self, "bare_opts", (edns.opt_record(0, False, option), edns.opt_record(0, True, option)))

    @property
    def in_dso_session(self) -> bool:
        return self.keepalive is None

    @classmethod
    def of(cls, tcp_timeout: int, pad: bool, closing: bool = False, dso: bool = False) -> TcpShape:
        """The shape for a listener's ``tcp_timeout`` (seconds) and ``tcp_pad``, in a connection state."""
        if dso:
            return cls(None, pad)
        return cls(0 if closing else tcp_timeout * 10, pad)
