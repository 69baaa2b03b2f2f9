"""What the zone loader says, and the TTL rules a record meets on its own.

The words of its warnings (one function each, used wherever a zone is
read), ``Reporter`` (warnings go to the log, or are errors under
``zones_strict_data``), the TTL clamps, the SOA's and DYNA/DYNC's TTL rules,
and the resolver plugins as the loader sees them. The whole-zone rules are
in ``rules``.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from pygdnsd.errors import ZoneError
from pygdnsd.log import frequent_warning
from pygdnsd.zones import model, names, rdata
from pygdnsd.zones.model import Record
from pygdnsd.zones.settings import ZoneSettings

log = logging.getLogger("pygdnsd.zones")

MAX_CNAME_CHAIN = 16
MAX_NS_RRSET = 64


class DynamicTargets(Protocol):
    """The resolver plugins, as the zone loader sees them (``plugins.registry.Resolvers``)."""

    def check(self, plugin: str, resource: str, dync: bool) -> None:
        """Raise ``ConfigError`` unless a DYNA (``dync`` False) or DYNC may use ``plugin!resource``."""
        ...


@runtime_checkable
class CnameTargets(Protocol):
    """Plugins that can list the CNAMEs a resource may answer with (lowercase wire names).

    gdnsd refuses a DYNC whose resource may answer with a CNAME inside the
    DYNC's own zone; the loader checks that when the plugins offer this.
    """

    def cname_targets(self, plugin: str, resource: str) -> tuple[bytes, ...]: ...


def dynamic_reference(rdata: bytes) -> tuple[str, str]:
    """A DYNA/DYNC rdata (``plugin!resource`` text) as (plugin, resource); resource "" when absent."""
    plugin, _, resource = rdata.decode("utf-8", "surrogateescape").partition("!")
    return plugin, resource


class Reporter:
    """Warnings go to the log, or become errors under ``strict_data``."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def warn(self, message: str, path: str, line: int | None, strictable: bool = True) -> None:
        if self.strict and strictable:
            raise ZoneError(message + " (an error because zones_strict_data is set)", path, line)
        where = f"{path}:{line}: " if line is not None else f"{path}: "
        frequent_warning(log, where + message)  # a zone may warn 100,000 times


def _text(name: bytes) -> str:
    return names.to_text(name)


# The warnings both loaders write, worded once.


def only_one_ns(apex: bytes) -> str:
    return f"zone '{_text(apex)}' only has one NS record, this is (probably) bad practice"


def mname_not_ns(apex: bytes) -> str:
    return f"zone '{_text(apex)}': SOA MNAME does not match any NS records for this zone"


def same_zone_ptr(owner: bytes, target: bytes) -> str:
    return (
        f"name '{_text(owner)}': PTR record points to same-zone name '{_text(target)}', "
        "which is usually a mistake (missing terminal dot?)"
    )


def no_addresses(owner: bytes, rtype: int, target: bytes) -> str:
    """An MX or SRV (``rtype``) record's target in the zone without addresses."""
    kind = "MX" if rtype == model.MX else "SRV"
    return f"in rrset '{_text(owner)} {kind}', same-zone target '{_text(target)}' has no addresses"


def cname_to_nxdomain(owner: bytes, target: bytes) -> str:
    return f"CNAME '{_text(owner)}' points to known same-zone NXDOMAIN '{_text(target)}'"


def out_of_zone_glue(owner: bytes, rtype: int, apex: bytes) -> str:
    """An A or AAAA (``rtype``) record outside the zone."""
    kind = "A" if rtype == model.A else "AAAA"
    return (
        f"'{_text(owner)} {kind}' in zone '{_text(apex)}': pointless out of zone glue "
        "will not be supported in a future version, please delete the record!"
    )


def unused_glue(owner: bytes) -> str:
    return f"glue address(es) at domainname '{_text(owner)}' are unused and ignored"


def acme_overridden(owner: bytes, ttl: int, acme: int) -> str:
    return (
        f"name '{_text(owner)}': ACME challenge TXT record TTL {ttl} overridden to {acme} "
        "from 'acme_challenge_dns_ttl' config setting"
    )


def ttls_disagree(owner: bytes, rtype: int, chosen: int) -> str:
    return (
        f"name '{_text(owner)}': all TTLs for {rdata.type_name(rtype)} records at the same name "
        f"should agree (using {chosen})"
    )


def _clamp_ttl(ttl: int, owner: bytes, what: str, rec: Record, settings: ZoneSettings, report: Reporter) -> int:
    """``ttl`` within the min_ttl/max_ttl settings, warning (never fatal) when it is not.

    ``what`` names the TTL in the message ("TTL", "DYNA TTL"); the owner's
    text is only made for a message, since most records need none.
    """
    clamped, message = clamp_ttl(ttl, owner, what, settings)
    if message is not None:
        report.warn(message, rec.path, rec.line, strictable=False)
    return clamped


def clamp_ttl(ttl: int, owner: bytes, what: str, settings: ZoneSettings) -> tuple[int, str | None]:
    """``ttl`` within the min_ttl/max_ttl settings, and the warning (never made an error) when it was not."""
    if ttl < settings.min_ttl:
        return settings.min_ttl, (
            f"name '{_text(owner)}': {what} {ttl} too small, clamped to min_ttl setting of {settings.min_ttl}"
        )
    if ttl > settings.max_ttl:
        return settings.max_ttl, (
            f"name '{_text(owner)}': {what} {ttl} too large, clamped to max_ttl setting of {settings.max_ttl}"
        )
    return ttl, None


def dynamic_rrset_and_warnings(
    owner: bytes, rec: Record, settings: ZoneSettings
) -> tuple[model.DynamicRRset, str | None, str | None]:
    """A DYNA/DYNC record's RRset, its MAX TTL's clamp (never an error) and its MIN TTL's warning, if any."""
    kind = "DYNC" if rec.rtype == model.DYNC else "DYNA"
    wanted_max = rec.ttl
    wanted_min = rec.dyn_min or wanted_max // 2
    high, clamp = clamp_ttl(wanted_max, owner, f"{kind} TTL", settings)
    low = wanted_min
    below = None
    if low < settings.min_ttl:
        below = (
            f"name '{_text(owner)}': {kind} Min-TTL /{low} too small, clamped to min_ttl setting of {settings.min_ttl}"
        )
        low = settings.min_ttl
    elif low > high:
        below = f"name '{_text(owner)}': {kind} Min-TTL /{low} larger than Max-TTL {high}, clamping to Max-TTL"
        low = high
    plugin, resource = dynamic_reference(rec.rdata)
    return model.DynamicRRset(rec.rtype, high, (), plugin, resource, low), clamp, below


def soa_rrset(apex: bytes, rec: Record, settings: ZoneSettings, report: Reporter) -> tuple[model.RRset, int]:
    """The SOA RRset served and the zone serial: MINIMUM clamped, then the TTL lowered to it."""
    ttl = _clamp_ttl(rec.ttl, apex, "TTL", rec, settings, report)
    wire = rec.rdata
    fixed_start = len(wire) - 20
    serial = int.from_bytes(wire[fixed_start : fixed_start + 4], "big")
    minimum = int.from_bytes(wire[-4:], "big")
    zone = _text(apex)
    if minimum > settings.max_ncache_ttl:
        report.warn(
            f"zone '{zone}': SOA negative-cache field {minimum} too large, clamped to "
            f"max_ncache_ttl setting of {settings.max_ncache_ttl}",
            rec.path, rec.line,
        )
        minimum = settings.max_ncache_ttl
    elif minimum < settings.min_ttl:
        report.warn(
            f"zone '{zone}': SOA negative-cache field {minimum} too small, clamped to "
            f"min_ttl setting of {settings.min_ttl}",
            rec.path, rec.line,
        )
        minimum = settings.min_ttl
    if ttl > minimum:
        report.warn(
            f"zone '{zone}': SOA TTL {ttl} > ncache field {minimum}, clamped to ncache value",
            rec.path, rec.line,
        )
        ttl = minimum
    rdata = wire[:-4] + minimum.to_bytes(4, "big")
    return model.RRset(model.SOA, ttl, (rdata,)), serial
