"""Which handed-over sockets a new daemon keeps, given the sockets its own config wants.

A replace may come with a changed ``listen`` list or thread counts. A socket
the config still wants (same address, family, kind and SO_REUSEPORT index) is
kept: it is the same kernel socket, with whatever is queued in it. Wanted
ones nobody handed over are bound fresh; handed-over ones nobody wants are
the caller's to close or keep (``daemon.daemon.Daemon.adopt``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pygdnsd.transport.listeners import ListenSocket, SocketSpec


def _key(spec: SocketSpec) -> tuple[Any, ...]:
    return (ipaddress.ip_address(spec.host), spec.port, spec.family, spec.kind, spec.index)


@dataclass(frozen=True)
class SocketPlan:
    """What to do with handed-over sockets given the sockets our config wants."""

    reuse: list[ListenSocket]  # in the order of ``wanted``
    close: list[ListenSocket]  # addresses gone from the config, or fewer threads: drain, close
    open: list[SocketSpec]  # new addresses or more threads: bind fresh with SO_REUSEPORT


def plan_sockets(handed: Sequence[ListenSocket], wanted: Sequence[SocketSpec]) -> SocketPlan:
    available = {_key(listener.spec): listener for listener in handed}
    reuse: list[ListenSocket] = []
    missing: list[SocketSpec] = []
    for spec in wanted:
        listener = available.pop(_key(spec), None)
        if listener is None:
            missing.append(spec)
        else:
            # Keep our spelling of the address with the kernel socket we were given.
            reuse.append(ListenSocket(spec, listener.sock))
    return SocketPlan(reuse, list(available.values()), missing)
