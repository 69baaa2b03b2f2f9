"""Query counters, named and shaped as gdnsd's ``gdnsdctl stats`` JSON.

The engine counts per-response outcomes (``stats``); the transports count
per-socket events (``udp``, ``tcp``). Counters are plain ints bumped from the
serving threads; losing an increment to a thread race is acceptable for
statistics, and the GIL makes it rare. A replace carries the counters over
(``snapshot``/``absorb``) so totals span every generation of the daemon;
worker processes (``transport.workers``) count in their own copy, which the
instance adds in the same way.
"""

from __future__ import annotations

from typing import Any

# How each query ended: every query is counted in exactly one of these, so
# they add up to the queries received (the status page charts them by rcode).
OUTCOME_COUNTERS = ("noerror", "refused", "nxdomain", "notimp", "badvers", "formerr", "dropped")
DNS_COUNTERS = (
    *OUTCOME_COUNTERS,
    "v6",
    "edns",
    "edns_clientsub",
    "edns_do",
    "edns_cookie_formerr",
    "edns_cookie_ok",
    "edns_cookie_init",
    "edns_cookie_bad",
)
UDP_COUNTERS = ("reqs", "recvfail", "sendfail", "tc", "edns_big", "edns_tc")
TCP_COUNTERS = (
    "reqs",
    "recvfail",
    "sendfail",
    "conns",
    "close_c",
    "close_s_ok",
    "close_s_err",
    "close_s_kill",
    "proxy",
    "proxy_fail",
    "dso_estab",
    "dso_protoerr",
    "dso_typeni",
    "acceptfail",
)


class Counters:
    """A named group of integer counters, accessed as a dict."""

    __slots__ = ("values",)

    def __init__(self, names: tuple[str, ...]) -> None:
        self.values: dict[str, int] = dict.fromkeys(names, 0)

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def bump(self, name: str, by: int = 1) -> None:
        self.values[name] += by


class Stats:
    """Every counter of one daemon, carried across replaces."""

    __slots__ = ("dns", "tcp", "udp")

    def __init__(self) -> None:
        self.dns = Counters(DNS_COUNTERS)
        self.udp = Counters(UDP_COUNTERS)
        self.tcp = Counters(TCP_COUNTERS)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            "stats": dict(self.dns.values),
            "udp": dict(self.udp.values),
            "tcp": dict(self.tcp.values),
        }

    def reset(self) -> None:
        """Every counter back to 0, in place (the engine and transports hold the dicts)."""
        for counters in (self.dns, self.udp, self.tcp):
            for name in counters.values:
                counters.values[name] = 0

    def absorb(self, snapshot: dict[str, Any]) -> None:
        """Add a previous generation's counters (from ``snapshot``) to ours."""
        for group, counters in (("stats", self.dns), ("udp", self.udp), ("tcp", self.tcp)):
            for name, value in snapshot.get(group, {}).items():
                if name in counters.values and isinstance(value, int):
                    counters.values[name] += value

    def as_json_dict(self, uptime: int) -> dict[str, Any]:
        """gdnsd's ``stats`` response shape: uptime first, then the groups."""
        out: dict[str, Any] = {"uptime": uptime}
        out.update(self.snapshot())
        return out
