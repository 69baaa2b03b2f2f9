"""What a resolver plugin is asked (ClientInfo) and what it answers (DynamicResult)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pygdnsd.monitoring.sttl import TTL_MAX


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """An EDNS client-subnet option: ``address`` is packed (4 or 16 bytes, zero-filled)."""

    address: bytes
    source_prefix: int


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The query's source address (packed, 4 or 16 bytes) and its client-subnet option."""

    address: bytes
    subnet: ClientSubnet | None = None


@dataclass(frozen=True, slots=True)
class DynamicResult:
    """Addresses (packed) or a CNAME target (lowercase wire name) for one lookup.

    ``ttl`` is the monitored TTL (least time to a possible change; TTL_MAX
    when nothing is monitored): the engine serves ``clamp_ttl(ttl, MAX, MIN)``
    with the record's MAX/MIN. ``cname_relative`` means ``cname`` lacks the
    root label and takes the zone's origin. ``failed`` is the resource-level
    failure that metafo fails over on. ``scope`` is the client-subnet scope
    prefix to echo when the query had the option.

    ``remembered``: the plugin hands out this very result again for the
    same decision (geoip's remembered answers), so work keyed on it is worth
    keeping: the engine caches the prepared answer under the result's value
    (``engine.dynamic_answers``). A hint only: equal results always get
    equal answers, whichever object carries them.
    """

    v4: tuple[bytes, ...] = ()
    v6: tuple[bytes, ...] = ()
    cname: bytes | None = None
    cname_relative: bool = False
    ttl: int = TTL_MAX
    failed: bool = False
    scope: int = 0
    remembered: bool = field(default=False, compare=False)
