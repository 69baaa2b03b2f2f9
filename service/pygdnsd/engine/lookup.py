"""Deciding what answers a question: pure functions over a ``ZoneSet``.

The result, a ``Decision``, says which records go in which section and with
which owner, independent of the question's case and of EDNS. The responder
turns a decision into wire bytes once and caches them, so nothing here is on
the per-packet path of a repeated question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pygdnsd.zones import model, names
from pygdnsd.zones.model import DynamicRRset, RRset, Zone, ZoneSet

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

# gdnsd's CNAME chain limit when chaining is on (experimental_no_chain => false).
MAX_CHAIN = 16

# RFC 8482 section 4.2: the synthesized answer to ANY.
ANY_HINFO = RRset(model.HINFO, 3600, (b"\x07RFC8482\x00",))

# An owner written as a pointer to the question name (offset 12).
QNAME = 0


@dataclass(frozen=True, slots=True)
class Record:
    """One RRset placed in a section; ``owner`` is a name or ``QNAME``."""

    owner: bytes | int
    rrset: RRset


@dataclass(frozen=True, slots=True)
class Decision:
    """What a question gets, before any wire encoding."""

    rcode: int
    authoritative: bool
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()

    def signature(self) -> tuple[object, ...]:
        """Equal for decisions with the same content (RRsets by identity: zone data is immutable).

        One flat tuple of atoms: each section's length, then (owner,
        id(RRset)) per record. The cyclic collector stops tracking such a
        tuple at the first collection that sees it; nested tuples could
        stay tracked into the older generations (see ``prepared.Prepared``).
        """
        flat: list[object] = [self.rcode, self.authoritative]
        for section in (self.answer, self.authority, self.additional):
            flat.append(len(section))
            for record in section:
                flat += (record.owner, id(record.rrset))
        return tuple(flat)


REFUSED = Decision(RCODE_REFUSED, False)


def _negative(zone: Zone, rcode: int) -> Decision:
    return Decision(rcode, True, authority=(Record(zone.apex, zone.soa),))


def _referral(zone: Zone, cut: bytes) -> Decision:
    """NS of the delegation in authority, and its glue in additional."""
    ns = zone.nodes[cut][model.NS]
    return Decision(RCODE_NOERROR, False, authority=(Record(cut, ns),), additional=_glue(zone, ns, cut))


def _glue(zone: Zone, ns: RRset, cut: bytes | None) -> tuple[Record, ...]:
    """The addresses served with ``ns``, the NS RRset of delegation ``cut`` (None: of the apex).

    As gdnsd: those of targets below the cut, below any other cut of the
    zone, and outside the zone (the loader keeps those addresses only for NS
    targets). Other targets in the zone are authoritative data, which gdnsd
    does not add.
    """
    glue: list[Record] = []
    apex = zone.apex
    for target in ns.rdatas:
        if (
            (cut is None or not names.is_within(target, cut))
            and names.is_within(target, apex)
            and not _below_a_cut(zone, target)
        ):
            continue
        node = zone.nodes.get(target)
        if node is None:
            continue
        for rtype in (model.A, model.AAAA):
            rrset = node.get(rtype)
            if rrset is not None:
                glue.append(Record(target, rrset))
    return tuple(glue)


def _below_a_cut(zone: Zone, name: bytes) -> bool:
    """Whether ``name`` (in ``zone``) lies at or below one of its delegations; remembered (``Zone.below_cut``)."""
    known = zone.below_cut.get(name)
    if known is None:
        at = name
        while at != zone.apex and at not in zone.cuts:
            at = names.parent(at)
        known = zone.below_cut[name] = at != zone.apex
    return known


@dataclass(frozen=True, slots=True)
class Location:
    """Where a qname falls in its zone.

    ``kind`` is one of ``"node"`` (the name exists: ``node`` is its data),
    ``"wildcard"`` (synthesised from ``node``, the wildcard's data),
    ``"cut"`` (at or below the delegation ``name``), ``"nxdomain"``.
    ``name`` is the name whose data answers (the node, the wildcard's
    closest encloser, the cut), a suffix of the qname except for wildcards.
    """

    kind: str
    zone: Zone
    name: bytes
    node: model.Node


def locate(zone: Zone, qname: bytes) -> Location:
    """Walk from the apex towards ``qname`` (lowercase wire, inside ``zone``)."""
    nodes = zone.nodes
    cuts = zone.cuts
    # Label offsets of qname, deepest name first; the apex is at apex_at.
    offsets = []
    pos = 0
    apex_at = len(qname) - len(zone.apex)
    while pos < apex_at:
        offsets.append(pos)
        pos += qname[pos] + 1
    encloser = zone.apex
    for pos in reversed(offsets):
        name = qname[pos:]
        if name in cuts:
            return Location("cut", zone, name, nodes[name])
        node = nodes.get(name)
        if node is None:
            wildcard = nodes.get(b"\x01*" + encloser)
            if wildcard is not None:
                return Location("wildcard", zone, encloser, wildcard)
            return Location("nxdomain", zone, encloser, nodes[encloser])
        encloser = name
    return Location("node", zone, qname, nodes[qname])


def decide(zones: ZoneSet, qname: bytes, qtype: int, chain: bool) -> Decision:
    """The answer to (qname, qtype) in class IN; ``chain`` follows CNAMEs in our zones."""
    zone = zones.find_zone(qname)
    if zone is None:
        return REFUSED
    return decide_at(zones, locate(zone, qname), qtype, chain)


# Answers a DYNA/DYNC for the query at hand: the RRset to serve (A, AAAA or
# CNAME, TTL already within the record's MAX/MIN), or None for no data.
DynamicLookup = Callable[[DynamicRRset, Zone, int], RRset | None]


def dynamic_at(where: Location, qtype: int) -> DynamicRRset | None:
    """The DYNA/DYNC record that answers ``qtype`` at ``where``, if one does.

    A DYNC answers every qtype (its name holds nothing else; for ANY, a
    CNAME it resolves to is the answer, as in gdnsd); a DYNA answers A and
    AAAA, and other types fall to the name's static data.
    """
    if where.kind not in ("node", "wildcard"):
        return None
    node = where.node
    dync = node.get(model.DYNC)
    if dync is not None:
        assert isinstance(dync, DynamicRRset)
        return dync
    if qtype == model.A or qtype == model.AAAA:
        dyna = node.get(model.DYNA)
        if dyna is not None:
            assert isinstance(dyna, DynamicRRset)
            return dyna
    return None


def decide_at(
    zones: ZoneSet, where: Location, qtype: int, chain: bool, dynamic: DynamicLookup | None = None
) -> Decision:
    """The decision for a located qname (see ``decide``); ``dynamic`` answers DYNA/DYNC."""
    zone = where.zone
    if where.kind == "cut":
        return _referral(zone, where.name)
    if where.kind == "nxdomain":
        return _negative(zone, RCODE_NXDOMAIN)
    node = where.node
    record = dynamic_at(where, qtype)
    if record is not None:
        answer = dynamic(record, zone, qtype) if dynamic is not None else None
        if answer is None:
            if qtype == model.ANY:
                return Decision(RCODE_NOERROR, True, (Record(QNAME, ANY_HINFO),))
            return _negative(zone, RCODE_NOERROR)
        return Decision(RCODE_NOERROR, True, (Record(QNAME, answer),))
    if qtype == model.ANY:
        cname = node.get(model.CNAME)
        return Decision(RCODE_NOERROR, True, (Record(QNAME, cname if cname else ANY_HINFO),))
    rrset = node.get(qtype)
    if rrset is not None:
        if qtype == model.NS and where.kind == "node" and where.name == zone.apex:
            return Decision(RCODE_NOERROR, True, (Record(QNAME, rrset),), additional=_glue(zone, rrset, None))
        return Decision(RCODE_NOERROR, True, (Record(QNAME, rrset),))
    cname = node.get(model.CNAME)
    if cname is not None:
        first = Decision(RCODE_NOERROR, True, (Record(QNAME, cname),))
        if not chain:
            return first
        return _chase(zones, zone, first, cname.rdatas[0], qtype)
    return _negative(zone, RCODE_NOERROR)


def _chase(zones: ZoneSet, start: Zone, first: Decision, target: bytes, qtype: int) -> Decision:
    """Follow a CNAME chain inside the zone it starts in (experimental_no_chain => false).

    Like gdnsd, a chain that leaves the zone stops at the CNAME pointing out,
    even when the target lies in another zone served here.
    """
    answer = list(first.answer)
    seen = {target}
    for _ in range(MAX_CHAIN):
        zone = zones.find_zone(target)
        if zone is not start:
            break
        where = locate(zone, target)
        if where.kind == "cut":
            referral = _referral(zone, where.name)
            return Decision(RCODE_NOERROR, True, tuple(answer), referral.authority, referral.additional)
        if where.kind == "nxdomain":
            return Decision(RCODE_NXDOMAIN, True, tuple(answer), _negative(zone, 0).authority)
        owner: bytes = target
        rrset = where.node.get(qtype)
        if rrset is not None:
            answer.append(Record(owner, rrset))
            if qtype == model.NS and where.kind == "node" and target == zone.apex:
                return Decision(RCODE_NOERROR, True, tuple(answer), additional=_glue(zone, rrset, None))
            break
        cname = where.node.get(model.CNAME)
        if cname is None:
            return Decision(RCODE_NOERROR, True, tuple(answer), _negative(zone, 0).authority)
        answer.append(Record(owner, cname))
        target = cname.rdatas[0]
        if target in seen:
            break
        seen.add(target)
    return Decision(RCODE_NOERROR, True, tuple(answer))
