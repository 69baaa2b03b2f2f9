"""Records of one zone -> ``model.Zone``, with gdnsd 3.8.1's semantic checks and TTL rules.

Rules checked against the real gdnsd (``checkconf`` and served answers):

* Exactly one SOA, at the apex; at least one NS at the apex (one only is a
  warning); SOA MNAME not among the apex NS targets is a warning.
* TTLs outside [min_ttl, max_ttl] are clamped with a warning that
  ``zones_strict_data`` does NOT upgrade.
* The SOA MINIMUM is clamped into [min_ttl, max_ncache_ttl] (warning) and the
  clamped value is what is served in the rdata; the SOA TTL is then lowered
  to MINIMUM when above it (warning).
* An RRset's TTL is its first record's; disagreeing TTLs are a warning.
* TXT at a name whose first label is ``_acme-challenge`` is served with
  ``acme_challenge_dns_ttl`` (warning when the file said otherwise), even
  below ``min_ttl``.
* Duplicate records are kept (gdnsd serves them twice).
* CNAME beside any other type (the apex included) is an error; a CNAME chain
  of more than 16 CNAMEs inside the zone (wildcards followed) is an error; a
  CNAME to a same-zone name that does not exist is a warning.
* Delegations: a delegation inside another is an error; at or below a cut
  only NS (at the cut) and A/AAAA are allowed; an NS target inside a
  delegated subzone must have A or AAAA; address records below cuts that no
  NS names are warned about and dropped.
* Out-of-zone A/AAAA are "pointless out of zone glue" (warning); they are
  kept when an NS names them (gdnsd serves them as additional data) and
  dropped otherwise. They sit in ``Zone.nodes`` under their own names.
* PTR to a same-zone name, MX/SRV to a same-zone name without addresses:
  warnings.

DYNA/DYNC (checked against ``gdnsd checkconf`` with plugins configured):

* Each ``plugin!resource`` must be accepted by the configured resolver
  plugins (``DynamicTargets.check``); without plugins they are refused.
* DYNC beside any other data (a second DYNC, a CNAME, the apex's SOA and
  NS) is an error; a second DYNA at a name, or a DYNA beside A or AAAA, too.
  DYNA beside anything else, at the apex, or on a wildcard is fine.
* For delegations a DYNA counts as an address record: allowed at and below
  a cut, where it is unused glue (warned about and dropped); an NS target
  inside a delegated subzone with a DYNA is an error. DYNC at or below a cut
  is an error. An MX/SRV target with a DYNA has addresses; with a DYNC not.
* A DYNC whose resource may answer a CNAME inside the zone is an error
  (checked when the plugins offer ``CnameTargets``).
* TTLs are ``MAX/MIN``; MIN not written (or 0) is half of MAX as written.
  MAX is clamped into [min_ttl, max_ttl] like any TTL (warning never made
  an error); then MIN below min_ttl, or above the clamped MAX, is raised or
  lowered to it with a warning that ``strict_data`` does make an error.

Every warning but the TTL clamps becomes an error under ``strict_data``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from pygdnsd.errors import ConfigError, ZoneError
from pygdnsd.zones import model, names, rdata
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.zonefile import Record

log = logging.getLogger("pygdnsd.zones")

MAX_CNAME_CHAIN = 16
MAX_NS_RRSET = 64
_ACME_LABEL = b"_acme-challenge"
_ADDRESS = (model.A, model.AAAA)
_WILDCARD = b"\x01*"
_DYNAMIC = (model.DYNA, model.DYNC)
# What makes a name an address holder for delegation glue and MX/SRV targets.
_ADDRESS_OR_DYNA = (model.A, model.AAAA, model.DYNA)


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
        log.warning("%s%s", where, message)


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


def _group(records: Iterable[Record]) -> dict[bytes, dict[int, list[Record]]]:
    grouped: dict[bytes, dict[int, list[Record]]] = {}
    for rec in records:
        node = grouped.get(rec.owner)
        if node is None:
            node = grouped[rec.owner] = {}
        rrs = node.get(rec.rtype)
        if rrs is None:
            node[rec.rtype] = [rec]
        else:
            rrs.append(rec)
    return grouped


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


def _rrset_ttl(owner: bytes, rtype: int, rrs: list[Record], settings: ZoneSettings, report: Reporter) -> int:
    ttls = [_clamp_ttl(rec.ttl, owner, "TTL", rec, settings, report) for rec in rrs]
    chosen = ttls[0]
    if rtype == model.TXT and names.labels(owner)[:1] == [_ACME_LABEL]:
        acme = settings.acme_challenge_dns_ttl
        for rec, ttl in zip(rrs, ttls, strict=True):
            if ttl != acme:
                report.warn(acme_overridden(owner, ttl, acme), rec.path, rec.line)
        return acme
    for rec, ttl in zip(rrs[1:], ttls[1:], strict=True):
        if ttl != chosen:
            report.warn(ttls_disagree(owner, rtype, chosen), rec.path, rec.line)
            break
    return chosen


class _ZoneBuilder:
    def __init__(
        self,
        apex: bytes,
        records: list[Record],
        settings: ZoneSettings,
        path: str,
        dynamic: DynamicTargets | None = None,
    ) -> None:
        self.apex = apex
        self.dynamic = dynamic
        self.settings = settings
        self.path = path
        self.report = Reporter(settings.strict_data)
        self.data = _group(records)
        self.cuts: set[bytes] = set()
        self.exists: set[bytes] = set()

    def cut_above(self, name: bytes) -> bytes | None:
        """The delegation point at or above ``name`` (within the zone), if any."""
        if not self.cuts:
            return None
        apex = self.apex
        while name != apex:
            if name in self.cuts:
                return name
            if name == names.ROOT:
                return None
            name = names.parent(name)
        return None

    def first(self, owner: bytes, rtype: int) -> Record:
        return self.data[owner][rtype][0]

    def check_dynamic(self) -> None:
        """DYNA/DYNC placement rules, and each target checked with the plugins."""
        for owner, node in self.data.items():
            if model.DYNA not in node and model.DYNC not in node:
                continue
            dyncs = node.get(model.DYNC)
            if dyncs is not None and (len(node) > 1 or len(dyncs) > 1):
                # The DYNC's own line (or the second DYNC's): the apex's SOA line would mislead.
                rec = dyncs[1] if len(dyncs) > 1 else dyncs[0]
                raise ZoneError(f"name '{_text(owner)}': DYNC not allowed alongside other data", rec.path, rec.line)
            dynas = node.get(model.DYNA)
            if dynas is not None:
                if model.CNAME in node:
                    continue  # check_types words it as gdnsd does
                if len(dynas) > 1:
                    raise ZoneError(
                        f"name '{_text(owner)}': DYNA defined twice for the same name", dynas[1].path, dynas[1].line
                    )
                for rtype, kind in ((model.A, "A"), (model.AAAA, "AAAA")):
                    if rtype in node:
                        rec = node[rtype][0]
                        raise ZoneError(
                            f"name '{_text(owner)}': DYNA cannot co-exist at the same name as {kind}",
                            rec.path, rec.line,
                        )
            for rtype in _DYNAMIC:
                for rec in node.get(rtype, ()):
                    self.check_target(owner, rec)

    def check_target(self, owner: bytes, rec: Record) -> None:
        kind = "DYNC" if rec.rtype == model.DYNC else "DYNA"
        if self.dynamic is None:
            raise ZoneError(
                f"name '{_text(owner)}': {kind} record: DYNA/DYNC need the monitoring/plugins support, "
                "which this zone load was not given",
                rec.path, rec.line,
            )
        plugin, resource = dynamic_reference(rec.rdata)
        try:
            self.dynamic.check(plugin, resource, rec.rtype == model.DYNC)
        except ConfigError as exc:
            raise ZoneError(f"name '{_text(owner)}': {kind} {plugin}!{resource}: {exc}", rec.path, rec.line) from None
        if rec.rtype == model.DYNC and isinstance(self.dynamic, CnameTargets):
            for target in self.dynamic.cname_targets(plugin, resource):
                if names.is_within(target, self.apex):
                    raise ZoneError(
                        f"name '{_text(owner)}': DYNC {plugin}!{resource}: CNAME value '{_text(target)}' "
                        f"cannot be used within zone '{_text(self.apex)}'",
                        rec.path, rec.line,
                    )

    def check_apex(self) -> None:
        apex_node = self.data.get(self.apex, {})
        soas = apex_node.get(model.SOA, [])
        if not soas:
            raise ZoneError(f"zone '{_text(self.apex)}' has no SOA record", self.path)
        if len(soas) > 1:
            raise ZoneError(f"zone '{_text(self.apex)}': SOA defined twice", soas[1].path, soas[1].line)
        ns = apex_node.get(model.NS, [])
        if not ns:
            raise ZoneError(f"zone '{_text(self.apex)}' has no NS records", self.path)
        if len(ns) == 1:
            self.report.warn(only_one_ns(self.apex), ns[0].path, ns[0].line)
        mname = soas[0].rdata[: _name_length(soas[0].rdata)]
        if all(rec.rdata != mname for rec in ns):
            self.report.warn(mname_not_ns(self.apex), soas[0].path, soas[0].line)

    def check_types(self) -> None:
        for owner, node in self.data.items():
            if model.CNAME in node and len(node) > 1:
                rec = next(rrs[0] for rtype, rrs in node.items() if rtype != model.CNAME)
                raise ZoneError(f"name '{_text(owner)}': CNAME not allowed alongside other data", rec.path, rec.line)
            ns = node.get(model.NS)
            if ns is not None and len(ns) > MAX_NS_RRSET:
                raise ZoneError(
                    f"name '{_text(owner)}': too many NS records in one NS RRset ({len(ns)} > {MAX_NS_RRSET})",
                    ns[MAX_NS_RRSET].path, ns[MAX_NS_RRSET].line,
                )
            if ns is not None and owner != self.apex and names.is_within(owner, self.apex):
                self.cuts.add(owner)

    def check_delegations(self) -> None:
        for cut in self.cuts:
            outer = self.cut_above(names.parent(cut))
            if outer is not None:
                rec = self.first(cut, model.NS)
                raise ZoneError(f"delegation '{_text(cut)}' is within another delegation", rec.path, rec.line)
        if not self.cuts:
            return
        for owner, node in self.data.items():
            above = self.cut_above(owner) if names.is_within(owner, self.apex) else None
            if above is None:
                continue
            allowed = (model.NS, *_ADDRESS_OR_DYNA) if owner == above else _ADDRESS_OR_DYNA
            for rtype, rrs in node.items():
                if rtype not in allowed:
                    raise ZoneError(
                        f"name '{_text(owner)}' is inside a delegated subzone, and can only have NS "
                        "and/or address records as appropriate",
                        rrs[0].path, rrs[0].line,
                    )

    def check_glue(self) -> None:
        """Require glue inside delegated subzones; drop addresses no NS uses."""
        used: set[bytes] = set()
        for node in self.data.values():
            for rec in node.get(model.NS, ()):
                target = rec.rdata
                used.add(target)
                if not names.is_within(target, self.apex) or self.cut_above(target) is None:
                    continue
                have = self.data.get(target, {})
                if model.DYNA in have:
                    raise ZoneError(
                        f"target nameserver in '{_text(rec.owner)} NS {_text(target)}' cannot have DYNA addresses",
                        rec.path, rec.line,
                    )
                if not any(t in have for t in _ADDRESS):
                    raise ZoneError(
                        "missing A and/or AAAA records for target nameserver in "
                        f"'{_text(rec.owner)} NS {_text(target)}'",
                        rec.path, rec.line,
                    )
        for owner in list(self.data):
            node = self.data[owner]
            in_zone = names.is_within(owner, self.apex)
            if in_zone and self.cut_above(owner) is None:
                continue
            addresses = [rrs[0] for t, rrs in node.items() if t in _ADDRESS_OR_DYNA]
            if not in_zone:
                for rec in addresses:
                    self.report.warn(out_of_zone_glue(owner, rec.rtype, self.apex), rec.path, rec.line)
            if addresses and owner not in used:
                self.report.warn(unused_glue(owner), addresses[0].path, addresses[0].line)
                for rtype in _ADDRESS_OR_DYNA:
                    node.pop(rtype, None)
                if not in_zone:
                    del self.data[owner]

    def compute_exists(self) -> None:
        exists = self.exists
        apex = self.apex
        exists.add(apex)
        for owner in self.data:
            if not names.is_within(owner, apex):
                continue
            name = owner
            while name not in exists:
                exists.add(name)
                name = names.parent(name)

    def lookup(self, target: bytes) -> tuple[str, bytes]:
        """Where a same-zone name leads: ("cname", next), ("data", _), ("cut", _) or ("nx", _)."""
        if self.cut_above(target) is not None:
            return "cut", target
        node = self.data.get(target)
        if target in self.exists:
            if node is not None and model.CNAME in node:
                return "cname", node[model.CNAME][0].rdata
            return "data", target
        encloser = names.parent(target)
        while encloser not in self.exists:
            encloser = names.parent(encloser)
        wild = self.data.get(_WILDCARD + encloser)
        if wild is None:
            return "nx", target
        if model.CNAME in wild:
            return "cname", wild[model.CNAME][0].rdata
        return "data", target

    def check_targets(self) -> None:
        apex = self.apex
        for owner, node in self.data.items():
            cnames = node.get(model.CNAME)
            if cnames is not None:
                self.check_chain(owner, cnames[0])
            for rec in node.get(model.PTR, ()):
                if names.is_within(rec.rdata, apex):
                    self.report.warn(same_zone_ptr(owner, rec.rdata), rec.path, rec.line)
            for rtype, skip in ((model.MX, 2), (model.SRV, 6)):
                for rec in node.get(rtype, ()):
                    target = rec.rdata[skip:]
                    if not names.is_within(target, apex) or self.cut_above(target) is not None:
                        continue
                    have = self.data.get(target, {})
                    if not any(t in have for t in _ADDRESS_OR_DYNA):
                        self.report.warn(no_addresses(owner, rtype, target), rec.path, rec.line)

    def check_chain(self, owner: bytes, rec: Record) -> None:
        target = rec.rdata
        depth = 1
        first_hop = True
        while names.is_within(target, self.apex):
            kind, nxt = self.lookup(target)
            if kind == "nx" and first_hop:
                self.report.warn(cname_to_nxdomain(owner, target), rec.path, rec.line)
            if kind != "cname":
                return
            depth += 1
            if depth > MAX_CNAME_CHAIN:
                raise ZoneError(
                    f"CNAME '{_text(owner)}' leads to a CNAME chain more than {MAX_CNAME_CHAIN} deep "
                    "(a loop?) within the zone",
                    rec.path, rec.line,
                )
            target = nxt
            first_hop = False

    def soa(self) -> tuple[model.RRset, int]:
        return soa_rrset(self.apex, self.first(self.apex, model.SOA), self.settings, self.report)

    def build(self) -> model.Zone:
        self.check_apex()
        self.check_dynamic()
        self.check_types()
        self.check_delegations()
        self.check_glue()
        self.compute_exists()
        self.check_targets()
        soa, serial = self.soa()
        nodes: dict[bytes, dict[int, model.RRset]] = {name: {} for name in self.exists}
        for owner, node in self.data.items():
            out = nodes.setdefault(owner, {})
            for rtype, rrs in node.items():
                if rtype == model.SOA:
                    out[rtype] = soa
                    continue
                if rtype in _DYNAMIC:
                    out[rtype] = dynamic_rrset(owner, rrs[0], self.settings, self.report)
                    continue
                ttl = _rrset_ttl(owner, rtype, rrs, self.settings, self.report)
                out[rtype] = model.RRset(rtype, ttl, tuple(rec.rdata for rec in rrs))
        compact = {name: model.node_of(rrsets) for name, rrsets in nodes.items()}
        return model.Zone(self.apex, serial, soa, compact, frozenset(self.cuts), self.path)


def dynamic_rrset(owner: bytes, rec: Record, settings: ZoneSettings, report: Reporter) -> model.DynamicRRset:
    """A DYNA/DYNC record with its MAX and MIN TTLs clamped as gdnsd does."""
    rrset, clamp, below = dynamic_rrset_and_warnings(owner, rec, settings)
    if clamp is not None:
        report.warn(clamp, rec.path, rec.line, strictable=False)
    if below is not None:
        report.warn(below, rec.path, rec.line)
    return rrset


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
    ttl = _rrset_ttl(apex, model.SOA, [rec], settings, report)
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


def _name_length(wire: bytes) -> int:
    """Length of the name at the start of ``wire``."""
    pos = 0
    while wire[pos]:
        pos += wire[pos] + 1
    return pos + 1


def build_zone(
    apex: bytes,
    records: list[Record],
    settings: ZoneSettings,
    path: str,
    dynamic: DynamicTargets | None = None,
) -> model.Zone:
    """The zone made of ``records``; ``ZoneError`` (file:line) for the first problem.

    ``dynamic`` checks DYNA/DYNC targets; without it they are refused.
    """
    return _ZoneBuilder(apex, records, settings, path, dynamic).build()
