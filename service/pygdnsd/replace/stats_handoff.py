"""The old daemon's final counters (PSH_SHAND), in gdnsd 3.8.1's order, and its start time.

PSH_SHAND carries ``d / 8`` 64-bit slots. gdnsd 3.8.1 reads the first 35 as
its counters in the order below and the *last* slot as the second (Unix
time) the first daemon of the chain started, so ``uptime`` runs on across
replaces; slots between are ignored, and counters a shorter hand-off lacks
stay 0. Learned by handing a gdnsd 3.8.1 new daemon slots holding distinct
values and reading them back from its ``gdnsdctl stats``: 40 slots, 36 and
35 all put the last one in ``uptime``.

pygdnsd counts exactly gdnsd's 35 counters under the same names, so both
daemon kinds send and read this one form, whichever the peer is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# (group in the stats JSON, counter name), in gdnsd 3.8.1's slot order.
GDNSD_STATS_ORDER: tuple[tuple[str, str], ...] = (
    ("udp", "recvfail"),
    ("udp", "sendfail"),
    ("udp", "tc"),
    ("udp", "edns_big"),
    ("udp", "edns_tc"),
    ("tcp", "recvfail"),
    ("tcp", "sendfail"),
    ("tcp", "conns"),
    ("tcp", "close_c"),
    ("tcp", "close_s_ok"),
    ("tcp", "close_s_err"),
    ("tcp", "close_s_kill"),
    ("stats", "noerror"),
    ("stats", "refused"),
    ("stats", "nxdomain"),
    ("stats", "notimp"),
    ("stats", "badvers"),
    ("stats", "formerr"),
    ("stats", "dropped"),
    ("stats", "v6"),
    ("stats", "edns"),
    ("stats", "edns_clientsub"),
    ("udp", "reqs"),
    ("tcp", "reqs"),
    ("stats", "edns_do"),
    ("stats", "edns_cookie_formerr"),
    ("stats", "edns_cookie_ok"),
    ("stats", "edns_cookie_init"),
    ("stats", "edns_cookie_bad"),
    ("tcp", "proxy"),
    ("tcp", "proxy_fail"),
    ("tcp", "dso_estab"),
    ("tcp", "dso_protoerr"),
    ("tcp", "dso_typeni"),
    ("tcp", "acceptfail"),
)

_MASK = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class FinalStats:
    """What PSH_SHAND says: the counters (``Stats.snapshot`` shape) and the chain's start time."""

    counters: dict[str, dict[str, int]]
    started: int | None  # Unix seconds; None when the hand-off carried no slot at all


def encode(counters: Mapping[str, Mapping[str, int]], started: int) -> list[int]:
    """The slots to send: gdnsd's 35 counters, then the start time."""
    values = [int(counters.get(group, {}).get(name, 0)) & _MASK for group, name in GDNSD_STATS_ORDER]
    return [*values, int(started) & _MASK]


def decode(slots: Sequence[int]) -> FinalStats:
    """Inverse of ``encode``, tolerant as gdnsd is of a peer with fewer or more counters."""
    if not slots:
        return FinalStats({"stats": {}, "udp": {}, "tcp": {}}, None)
    counters: dict[str, dict[str, int]] = {"stats": {}, "udp": {}, "tcp": {}}
    for (group, name), value in zip(GDNSD_STATS_ORDER, slots[:-1], strict=False):
        counters[group][name] = value
    return FinalStats(counters, slots[-1])
