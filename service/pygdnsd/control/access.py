"""Which requests a control listener serves: the unix socket every one, a TCP listener what its config permits.

A ``tcp_control`` address (man gdnsd.config) always serves the read-only
requests (INFO, STAT, STATE); ``chal_ok`` adds the ACME challenge requests
(CHAL, CHALF) and ``ctl_ok`` daemon control (ZREL, REPL). REQ_STOP and the
takeover requests are never served over TCP. The decision rests on the
request's key alone, so a request is permitted or not before anything looks
at what it asks.

How gdnsd 3.8.1 answers on TCP, observed: everything not permitted gets
RESP_DENY, unknown keys and response keys included (the unix socket answers
those RESP_UNK), and the connection stays open; a denied REQ_CHAL's data is
not skipped but read as more headers (``protocol.RequestReader``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pygdnsd.control import protocol


@dataclass(frozen=True)
class Access:
    """What clients of one control listener may ask."""

    challenges: bool = False  # chal_ok: REQ_CHAL, REQ_CHALF
    daemon_control: bool = False  # ctl_ok: REQ_ZREL, REQ_REPL
    local: bool = False  # the unix socket: every request, unknown keys get RESP_UNK

    def allows(self, key: int) -> bool:
        """Whether a request with this key is served (anything else is answered RESP_DENY)."""
        return (
            self.local
            or key in protocol.READONLY_REQUESTS
            or (self.challenges and key in protocol.CHALLENGE_REQUESTS)
            or (self.daemon_control and key in protocol.DAEMON_CONTROL_REQUESTS)
        )

    @property
    def payloads(self) -> bool:
        """Whether a REQ_CHAL here carries data (only where it is served, as in gdnsd)."""
        return self.allows(protocol.RequestKey.CHAL)

    def describe(self) -> str:
        if self.local:
            return "full control"
        granted = [
            name
            for name, on in (("ACME challenges", self.challenges), ("daemon control", self.daemon_control))
            if on
        ]
        return " + ".join(["read-only", *granted])


LOCAL = Access(challenges=True, daemon_control=True, local=True)
READ_ONLY = Access()


@dataclass(frozen=True)
class ControlListener:
    """A listening control socket, what its clients may ask, and its name for the log."""

    sock: socket.socket
    access: Access
    label: str
