"""What every resolver plugin offers, and the monitored-address building block."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.sttl import UP, Sttl, worst
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.values import Address

States = Mapping[str, Sttl]


class Resolver(Protocol):
    @property
    def name(self) -> str: ...

    def has(self, resource: str) -> bool:
        """Whether ``resource`` names something this plugin defines."""
        ...

    def may_cname(self, resource: str) -> bool:
        """Whether answers can be CNAMEs (then only DYNC may use it)."""
        ...

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult: ...


@dataclass(frozen=True)
class Monitored:
    """One address (or CNAME text) and the state names of its service types."""

    address: Address
    state_names: tuple[str, ...]

    def state(self, states: States) -> Sttl:
        return worst([states.get(n, UP) for n in self.state_names])


def monitored(monitor: Monitor, address: Address, service_types: tuple[str, ...]) -> Monitored:
    return Monitored(address, tuple(monitor.add(address.text, t) for t in service_types))


def split_families(items: list[Address]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    v4 = tuple(a.packed for a in items if not a.v6)
    v6 = tuple(a.packed for a in items if a.v6)
    return v4, v6
