"""The trivial resolvers: static, null and reflect.

Verified against gdnsd 3.8.1: their answers carry the record's MAX TTL (no
monitoring involved); reflect echoes the client-subnet source prefix as the
scope when the query had the option (others leave scope 0).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pygdnsd.config.vscf import ConfigHash, ConfigScalar
from pygdnsd.errors import ConfigError
from pygdnsd.plugins.base import States
from pygdnsd.plugins.result import ClientInfo, DynamicResult
from pygdnsd.plugins.values import parse_address, parse_cname

ZERO_V4 = bytes(4)
ZERO_V6 = bytes(16)
REFLECT_MODES = ("dns", "edns", "both", "best")


@dataclass(frozen=True)
class Static:
    results: dict[str, DynamicResult]
    name: str = "static"

    def has(self, resource: str) -> bool:
        return resource in self.results

    def may_cname(self, resource: str) -> bool:
        return self.results[resource].cname is not None

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        return self.results[resource]


def load_static(conf: ConfigHash) -> Static:
    results = {}
    for key, value in conf.items():
        where = f"plugin static: resource {key!r}"
        if not isinstance(value, ConfigScalar):
            raise ConfigError(f"{value.pos}: {where}: must be an IP address or a domain name")
        address = parse_address(value)
        if address is not None:
            packed = address.packed
            results[key] = (
                DynamicResult(v6=(packed,)) if address.v6 else DynamicResult(v4=(packed,))
            )
        else:
            cname = parse_cname(value, where)
            results[key] = DynamicResult(cname=cname.wire, cname_relative=cname.relative)
    return Static(results)


@dataclass(frozen=True)
class Null:
    """Any resource name: 0.0.0.0 and ::."""

    name: str = "null"

    def has(self, resource: str) -> bool:
        return True

    def may_cname(self, resource: str) -> bool:
        return False

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        return DynamicResult(v4=(ZERO_V4,), v6=(ZERO_V6,))


@dataclass(frozen=True)
class Reflect:
    name: str = "reflect"

    def has(self, resource: str) -> bool:
        return resource in REFLECT_MODES or resource == ""

    def may_cname(self, resource: str) -> bool:
        return False

    def resolve(
        self, resource: str, client: ClientInfo, states: States, rng: random.Random
    ) -> DynamicResult:
        mode = resource or "best"
        subnet = client.subnet
        found: list[bytes] = []
        # gdnsd 3.8.1 sets the scope to the source prefix in every mode, "dns" included.
        scope = subnet.source_prefix if subnet is not None else 0
        if mode in ("edns", "both", "best") and subnet is not None:
            found.append(subnet.address)
        if mode == "edns" and subnet is None:
            found.append(ZERO_V4)
        if mode in ("dns", "both") or (mode == "best" and subnet is None):
            found.append(client.address)
        v4 = tuple(a for a in found if len(a) == 4)
        v6 = tuple(a for a in found if len(a) == 16)
        return DynamicResult(v4=v4, v6=v6, scope=scope)
