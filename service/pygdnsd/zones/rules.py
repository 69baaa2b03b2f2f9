"""The whole-zone rules, the only ones: each piece of a zone checked alone, then what is left across pieces.

Errors raise ``parsing.Broken`` (or ``ZoneError`` where the line is known
here), which ``worded`` turns into the operator's message (file:line of the
record gdnsd's message names); warnings come back as findings, worded by
``messages``'s functions, with the line of the record they are about. However a
zone is read (in one pass or in pieces, by one process or several, by the
fast loop or the slow reader), these rules check it. (The TTL rules a
record meets on its own are applied as it is read, ``parsing``.)

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pygdnsd.errors import ConfigError, ZoneError
from pygdnsd.zones import model, names
from pygdnsd.zones.messages import (
    MAX_CNAME_CHAIN,
    MAX_NS_RRSET,
    CnameTargets,
    DynamicTargets,
    cname_to_nxdomain,
    dynamic_reference,
    mname_not_ns,
    no_addresses,
    only_one_ns,
    out_of_zone_glue,
    same_zone_ptr,
    unused_glue,
)
from pygdnsd.zones.model import Record
from pygdnsd.zones.parsing import (
    CNAME_BESIDE_DATA,
    CNAME_CHAIN,
    DATA_AT_CUT,
    DATA_BELOW_CUT,
    DYNA_BESIDE_ADDRESS,
    DYNAMIC_PLACE_OR_TARGET,
    GLUE_MISSING,
    NESTED_DELEGATION,
    NO_NS,
    NO_SOA,
    SECOND_SOA,
    TOO_MANY_NS,
    Broken,
    Finding,
    Remark,
    ZonePiece,
    within,
)

_A, _AAAA, _NS, _CNAME, _PTR, _MX = model.A, model.AAAA, model.NS, model.CNAME, model.PTR, model.MX
_DYNA, _DYNC = model.DYNA, model.DYNC
_ADDRESS = (_A, _AAAA)
# Addresses as glue and MX/SRV targets see them: a DYNA has some (gdnsd 3.8.1, checkconf).
_ADDRESS_OR_DYNA = (_A, _AAAA, _DYNA)
_WILDCARD = b"\x01*"


def _cut_above(name: bytes, apex: bytes, cuts: set[bytes]) -> bytes | None:
    while name != apex:
        if name in cuts:
            return name
        name = name[name[0] + 1 :]
    return None


def _has_address(node: model.Node | None) -> bool:
    """Whether an MX or SRV target has addresses (a DYNA counts)."""
    if node is None:
        return False
    if isinstance(node, dict):
        return _A in node or _AAAA in node or _DYNA in node
    return node.rtype in _ADDRESS_OR_DYNA


def _has_glue(node: model.Node) -> bool:
    """Whether an NS target below a cut has the addresses a referral needs (a DYNA's do not count)."""
    if isinstance(node, dict):
        return _A in node or _AAAA in node
    return node.rtype in _ADDRESS


# A record the whole-zone rules may have to speak of: (target, type, owner, line).
Pointer = tuple[bytes, int, bytes, int]


@dataclass(slots=True)
class Unsettled:
    """What the pieces of a zone leave for the whole zone to settle (see ``check_piece``).

    A piece settles alone what no other piece can change: names only gain
    RRsets when pieces merge, so a target found here with an address keeps
    it, a name outside the zone is nowhere, and the owners below one of the
    piece's own cuts are glue wherever the cut's other records are. What is
    left is small, so the serial check after the pieces merge is too.
    """

    used: set[bytes]  # NS targets
    unused: list[bytes]  # glue, and cuts with addresses, that no NS target of its piece names
    ns: list[bytes]  # NS targets not settled
    mx: list[Pointer]  # MX and SRV records whose target is not settled
    chains: list[Pointer]  # CNAME records the chain rule must follow
    plain: list[Pointer]  # CNAMEs to names with other data, not at or below a cut of their piece
    # Per piece: its cuts, the proper ancestors of its owners that it does not hold
    # (see ``_deep_names``), and its cuts' parents other than the apex.
    per_piece: list[tuple[set[bytes], set[bytes], set[bytes]]]
    warnings: list[Remark] = field(default_factory=list)  # settled within the piece
    apex_ns_lines: list[int] = field(default_factory=list)
    shared: set[bytes] = field(default_factory=set)  # names more than one piece holds

    def add(self, other: Unsettled) -> None:
        self.used |= other.used
        self.unused += other.unused
        self.ns += other.ns
        self.mx += other.mx
        self.chains += other.chains
        self.plain += other.plain
        self.per_piece += other.per_piece
        self.warnings += other.warnings
        self.apex_ns_lines += other.apex_ns_lines
        self.shared |= other.shared


def check_piece(piece: ZonePiece) -> Unsettled:
    """The piece checked against its own names (``Broken`` if it is bad already), and what is left."""
    apex = piece.apex
    nodes = piece.nodes
    get = nodes.get
    address = _ADDRESS
    cuts: set[bytes] = set()
    used: set[bytes] = set()
    ns: list[bytes] = []
    mx: list[Pointer] = []
    chains: list[Pointer] = []
    plain: list[Pointer] = []
    warnings: list[Remark] = []
    apex_ns_lines: list[int] = []
    for (rtype, owner, target), line in zip(piece.targets, piece.target_lines, strict=True):
        if rtype == _NS:
            used.add(target)
            if owner != apex:
                cuts.add(owner)
            else:
                apex_ns_lines.append(line)
            found = get(target)
            # A target holding an address here is fine anywhere.
            if found is None:
                if within(target, apex):
                    ns.append(target)
            elif (_A not in found and _AAAA not in found) if isinstance(found, dict) else found.rtype not in address:
                ns.append(target)
        elif rtype == _CNAME:
            found = get(target)
            if found is None:
                if within(target, apex):
                    chains.append((target, rtype, owner, line))
            elif _CNAME in found:
                chains.append((target, rtype, owner, line))
            else:
                plain.append((target, rtype, owner, line))
        elif rtype == _PTR:
            if within(target, apex):
                warnings.append((owner, rtype, line, same_zone_ptr(owner, target)))
        else:
            name = target[2:] if rtype == _MX else target[6:]
            found = get(name)
            # A target holding an address here is fine anywhere.
            if found is None:
                if within(name, apex):
                    mx.append((name, rtype, owner, line))
            elif not _has_address(found):
                mx.append((name, rtype, owner, line))
    glue, ancestors = _deep_names(piece.deep, nodes, apex, cuts)
    unused = _bad_glue(glue, cuts, nodes, used)
    if plain and (glue or cuts):
        # At or below a cut of this piece: the chain rule applies.
        below = cuts.union(glue)
        chains += [entry for entry in plain if entry[0] in below]
        plain = [entry for entry in plain if entry[0] not in below]
    cut_parents = {cut[cut[0] + 1 :] for cut in cuts}
    cut_parents.discard(apex)
    return Unsettled(used, unused, ns, mx, chains, plain, [(cuts, ancestors, cut_parents)], warnings, apex_ns_lines)


def _bad_glue(glue: list[bytes], cuts: set[bytes], nodes: dict[bytes, model.Node], used: set[bytes]) -> list[bytes]:
    """``Broken`` for data at or below a cut other than glue (and the cut's NS); the glue ``used`` does not hold."""
    unused: list[bytes] = []
    for cut in cuts:
        node = nodes[cut]
        if isinstance(node, dict):
            if any(rtype != _NS and rtype not in _ADDRESS_OR_DYNA for rtype in node):
                raise Broken(DATA_AT_CUT, cut)
            if (_A in node or _AAAA in node or _DYNA in node) and cut not in used:
                unused.append(cut)
            node = node[_NS]
        if len(node.rdatas) > MAX_NS_RRSET:  # a lone RRset at a cut is its NS
            raise Broken(TOO_MANY_NS, cut)
    for owner in [owner for owner in glue if isinstance(node := nodes[owner], dict) or node.rtype not in _ADDRESS_OR_DYNA]:
        node = nodes[owner]
        if not isinstance(node, dict) or any(rtype not in _ADDRESS_OR_DYNA for rtype in node):
            raise Broken(DATA_BELOW_CUT, owner)
    unused += [owner for owner in glue if owner not in used]
    return unused


def _deep_names(
    deep: list[bytes], nodes: dict[bytes, model.Node], apex: bytes, cuts: set[bytes]
) -> tuple[list[bytes], set[bytes]]:
    """The owners in ``deep`` strictly below a cut (less the cuts), and their proper ancestors below the apex not in ``nodes``.

    Less the names of every piece, the ancestors are the zone's empty
    non-terminals. One walk up from each distinct parent, to the first
    name already settled (or a cut): names share most of their ancestors.
    A walk that stops at a cut leaves the names above it to the cut's own
    entry in ``deep`` (a cut below a child of the apex is deep).
    """
    parents = [owner[owner[0] + 1 :] for owner in deep]
    under = set(cuts)  # at or below a cut
    settled = under | {apex, apex[apex[0] + 1 :]}  # the apex's parent is the apex's own, outside the zone
    walked: list[bytes] = []
    for start in set(parents).difference(settled):
        name = start
        chain = []
        while name not in settled:
            chain.append(name)
            name = name[name[0] + 1 :]
        settled.update(chain)
        walked += chain
        if name in under:
            under.update(chain)
    ancestors = set(walked).difference(nodes)
    glue = [owner for owner, parent in zip(deep, parents, strict=True) if parent in under and owner not in cuts] if cuts else []
    return glue, ancestors


def _apex_warnings(zone: ZonePiece, apex_ns: model.RRset, first_ns: int) -> list[Finding]:
    """Only one NS at the apex (at its line, ``first_ns``), the SOA's MNAME not among them (at the SOA's)."""
    assert zone.soa is not None
    at_apex: list[Finding] = []
    if len(apex_ns.rdatas) == 1:
        at_apex.append((first_ns, only_one_ns(zone.apex)))
    soa_rdata = zone.soa.rdata
    pos = 0
    while soa_rdata[pos]:
        pos += soa_rdata[pos] + 1
    if soa_rdata[: pos + 1] not in apex_ns.rdatas:
        at_apex.append((zone.soa_position, mname_not_ns(zone.apex)))
    return at_apex


def _check_dynamic(zone: ZonePiece, plugins: DynamicTargets | None) -> None:
    """Where DYNA and DYNC may be, name by name as the names first appear; then each target with the plugins."""
    nodes = zone.nodes
    at: dict[bytes, list[Record]] = {}
    for record in zone.dynamic:
        at.setdefault(record.owner, []).append(record)
    for owner in [name for name in nodes if name in at] if len(at) > 1 else at:
        node = nodes[owner]
        types = list(node) if isinstance(node, dict) else [node.rtype]
        records = at[owner]
        dyncs = [record for record in records if record.rtype == _DYNC]
        if dyncs and (len(types) > 1 or len(dyncs) > 1):
            # The DYNC's own line (or the second DYNC's): the apex's SOA line would mislead.
            record = dyncs[1] if len(dyncs) > 1 else dyncs[0]
            raise _dynamic_error(record, f"name '{_text(owner)}': DYNC not allowed alongside other data")
        dynas = [record for record in records if record.rtype == _DYNA]
        if dynas:
            if _CNAME in types:
                continue  # the CNAME rule words it
            if len(dynas) > 1:
                raise _dynamic_error(dynas[1], f"name '{_text(owner)}': DYNA defined twice for the same name")
            if _A in types or _AAAA in types:
                raise Broken(DYNA_BESIDE_ADDRESS, owner)
        for record in records:
            _check_target(zone.apex, record, plugins)


def _check_target(apex: bytes, record: Record, plugins: DynamicTargets | None) -> None:
    """A DYNA or DYNC target checked with the plugins (gdnsd's words for their refusals)."""
    owner = record.owner
    kind = "DYNC" if record.rtype == _DYNC else "DYNA"
    if plugins is None:
        raise _dynamic_error(
            record,
            f"name '{_text(owner)}': {kind} record: DYNA/DYNC need the monitoring/plugins support, "
            "which this zone load was not given",
        )
    plugin, resource = dynamic_reference(record.rdata)
    try:
        plugins.check(plugin, resource, record.rtype == _DYNC)
    except ConfigError as exc:
        raise _dynamic_error(record, f"name '{_text(owner)}': {kind} {plugin}!{resource}: {exc}") from None
    if record.rtype == _DYNC and isinstance(plugins, CnameTargets):
        for target in plugins.cname_targets(plugin, resource):
            if names.is_within(target, apex):
                raise _dynamic_error(
                    record,
                    f"name '{_text(owner)}': DYNC {plugin}!{resource}: CNAME value '{_text(target)}' "
                    f"cannot be used within zone '{_text(apex)}'",
                )


def _dynamic_error(record: Record, message: str) -> Broken:
    """A DYNA/DYNC rule broken, at that record's line (known here: the record is kept)."""
    return Broken(DYNAMIC_PLACE_OR_TARGET, record.owner, at=(record.path, record.line), message=message)


def _inside_cuts(
    per_piece: list[tuple[set[bytes], set[bytes], set[bytes]]], apex: bytes, cuts: set[bytes]
) -> set[bytes]:
    """The parents of cuts (other than the apex) that are at or below another cut: their cuts are nested.

    Only a cut below a child of the apex can be nested; each parent walked once.
    """
    return {
        parent for parent in set().union(*(part[2] for part in per_piece)) if _cut_above(parent, apex, cuts) is not None
    }


def _glue_across(unsettled: Unsettled, cuts: set[bytes]) -> bool:
    """Whether a piece may hold names below another piece's cut, so its own glue check fell short.

    Such a name's ancestor is either a name its piece does not hold (in the
    piece's ancestors, which hold none of its own cuts) or one it holds that
    is a cut elsewhere (a name two pieces hold).
    """
    if any(not ancestors.isdisjoint(cuts) for _, ancestors, _ in unsettled.per_piece):
        return True
    return any(not all(name in part[0] for part in unsettled.per_piece) for name in unsettled.shared.intersection(cuts))


@dataclass(frozen=True, slots=True)
class Verdict:
    """A zone that passed the whole-zone rules: what it is made of, and what to warn about.

    The warnings come in gdnsd's order (and the removed reference path's): the apex's, the glue's
    (``glue_findings``, which needs the lines of ``unused_glue``'s records),
    then those about records (to be put in the order of their names, see
    ``in_data_order``).
    """

    cuts: set[bytes]
    ents: set[bytes]  # empty non-terminals
    at_apex: list[Finding]
    used: set[bytes]  # NS targets
    unused_glue: list[bytes]  # in the zone: names at or below a cut whose addresses no NS names
    records: list[Remark]
    chain_error: Broken | None = None  # the zone is refused, once the warnings before it are written


def check_zone(zone: ZonePiece, unsettled: Unsettled, plugins: DynamicTargets | None = None) -> Verdict:
    """The zone's verdict; ``Broken`` for an error, but for an over-long CNAME chain (``Verdict.error``).

    ``unsettled`` is what the pieces left (``check_piece``), every piece's
    together; ``plugins`` check DYNA/DYNC targets (without them, a zone
    holding one is refused).
    """
    apex = zone.apex
    nodes = zone.nodes
    apex_node = nodes.get(apex)
    if apex_node is None or zone.soa is None:
        raise Broken(NO_SOA, next(iter(nodes), b""))
    apex_ns = apex_node.get(_NS)
    if apex_ns is None:
        raise Broken(NO_NS, apex, at=(zone.soa.path, zone.soa.line))
    at_apex = _apex_warnings(zone, apex_ns, min(unsettled.apex_ns_lines))
    # gdnsd writes the apex's warnings before it finds any error below.
    chain_error: Broken | None = None
    try:
        if zone.dynamic:
            _check_dynamic(zone, plugins)
        if len(apex_ns.rdatas) > MAX_NS_RRSET:
            raise Broken(TOO_MANY_NS, apex)

        per_piece = unsettled.per_piece
        cuts = per_piece[0][0] if len(per_piece) == 1 else set().union(*(part[0] for part in per_piece))
        used = unsettled.used
        inside = _inside_cuts(per_piece, apex, cuts)
        if inside:
            raise Broken(NESTED_DELEGATION, targets=tuple(cut for cut in cuts if cut[cut[0] + 1 :] in inside))
        ents = set().union(*(part[1] for part in per_piece)).difference(nodes)

        if _glue_across(unsettled, cuts):
            # The pieces' glue checks do not cover it all: the whole zone's, as one piece.
            glue = _deep_names(zone.deep, nodes, apex, cuts)[0]
            unused = _bad_glue(glue, cuts, nodes, used)
            below = cuts.union(glue)
            plain = [entry for entry in unsettled.plain if entry[0] in below]
        else:
            unused = unsettled.unused
            plain = [entry for entry in unsettled.plain if entry[0] in cuts]  # the pieces set aside their own glue
        unused_glue = [name for name in dict.fromkeys(unused) if name not in used]

        def in_below(name: bytes) -> bool:
            return name in nodes and _cut_above(name, apex, cuts) is not None

        unglued = []
        for target in set(unsettled.ns):
            found = nodes.get(target)
            if found is not None:
                if not _has_glue(found) and in_below(target):
                    unglued.append(target)
            elif cuts and within(target, apex) and _cut_above(target, apex, cuts) is not None:
                unglued.append(target)
        if unglued:
            raise Broken(GLUE_MISSING, targets=tuple(unglued))
        # Per record, as gdnsd words it; each target looked at once.
        records: list[Remark] = list(unsettled.warnings)
        addressless: dict[bytes, bool] = {}
        for name, rtype, owner, line in unsettled.mx:
            bad = addressless.get(name)
            if bad is None:
                node = nodes.get(name)
                if node is not None:
                    bad = not _has_address(node) and not in_below(name)
                else:
                    # In the zone: a piece keeps a target it does not hold only then (``check_piece``),
                    # so ``within`` is not asked again (77k times in load-warn).
                    bad = not cuts or _cut_above(name, apex, cuts) is None
                addressless[name] = bad
            if bad:
                records.append((owner, rtype, line, no_addresses(owner, rtype, name)))
        dangling: dict[bytes, bool] = {}
        for pointer in unsettled.chains:
            target = pointer[0]
            node = nodes.get(target)
            if node is None or _CNAME in node or in_below(target):
                try:
                    _chain_finding(pointer, apex, nodes, ents, cuts, dangling, records)
                except Broken as broken:
                    # The first, in the order of the names (a CNAME's owner holds nothing else, so
                    # that is the order of the CNAME records): gdnsd first writes the warnings
                    # about the names before it (``finish``).
                    chain_error = broken
                    break
        for pointer in plain:
            _chain_finding(pointer, apex, nodes, ents, cuts, dangling, records)
    except Broken as broken:
        broken.before = at_apex
        raise
    return Verdict(cuts, ents, at_apex, used, unused_glue, records, chain_error)


def glue_findings(apex: bytes, noted: list[tuple[bytes, int, int]], verdict: Verdict) -> dict[bytes, list[Finding]]:
    """The warnings about glue, per name: outside the zone, or unused (``noted`` holds their records' lines).

    As the reference words them: each address type's first record outside
    the zone, then, unused, the first address record.
    """
    unused = set(verdict.unused_glue)
    firsts: dict[bytes, dict[int, int]] = {}  # name -> address type -> its first record's line
    for owner, rtype, line in noted:
        if rtype in _ADDRESS_OR_DYNA:
            firsts.setdefault(owner, {}).setdefault(rtype, line)
    per_name: dict[bytes, list[Finding]] = {}
    for owner, types in firsts.items():
        outside = not within(owner, apex)
        if not outside and owner not in unused:
            continue
        found = [(line, out_of_zone_glue(owner, rtype, apex)) for rtype, line in types.items()] if outside else []
        if owner not in verdict.used:
            found.append((min(types.values()), unused_glue(owner)))
        per_name[owner] = found
    return per_name


def in_data_order(
    nodes: dict[bytes, model.Node],
    glue: dict[bytes, list[Finding]],
    records: list[Remark],
    clamped: list[Remark],
    ttl_warnings: list[Remark],
) -> tuple[list[Finding], list[tuple[int, str, bool]]]:
    """The warnings about glue and records, and those about TTLs, in the order the reference writes them.

    It goes through the names in the order they first appear (``nodes``'
    order): all of them for glue, then for records (per name: CNAME, PTR,
    MX, SRV, as the type numbers go), then, after the SOA's warnings, for
    TTLs (per name, type by type as they first appear at it: the clamps,
    then the ACME and disagreeing TTLs). Each TTL warning says whether
    ``zones_strict_data`` makes it an error (a clamp never is).
    """
    owners = set(glue).union(*([remark[0] for remark in remarks] for remarks in (records, clamped, ttl_warnings)))
    if not owners:
        return [], []
    # Ranks among the owners only, the names picked by ``filter`` in C: 65 -> 44 ms for 77k owners
    # of 1M names (load-warn).
    rank = {name: index for index, name in enumerate(filter(owners.__contains__, nodes))}
    by_glue = [finding for owner in sorted(glue, key=rank.__getitem__) for finding in glue[owner]]
    # Sorts are stable, and each list is in reading order ($INCLUDEd records where they are
    # included): within an RRset, that is the reference's order (positions are not).
    records = sorted(records, key=lambda remark: (rank[remark[0]], remark[1]))

    def ttl_order(remark: Remark) -> tuple[int, int]:
        node = nodes[remark[0]]
        types = list(node) if isinstance(node, dict) else [node.rtype]
        return rank[remark[0]], types.index(remark[1])

    # Per RRset, its clamps come before its other TTL warnings.
    ttls = sorted(
        [(remark, False) for remark in clamped] + [(remark, True) for remark in ttl_warnings],
        key=lambda pair: ttl_order(pair[0]),
    )
    return (
        by_glue + [(position, message) for _, _, position, message in records],
        [(position, message, strictable) for (_, _, position, message), strictable in ttls],
    )


def drop_unused_glue(nodes: dict[bytes, model.Node], verdict: Verdict, outside_unused: Iterable[bytes]) -> None:
    """As the reference: unused glue's addresses are not served; an unused name outside the zone goes."""
    for owner in outside_unused:
        del nodes[owner]
    for owner in verdict.unused_glue:
        node = nodes[owner]
        if isinstance(node, dict):
            rest = {rtype: rrset for rtype, rrset in node.items() if rtype not in _ADDRESS_OR_DYNA}
            nodes[owner] = model.node_of(rest)
        else:
            nodes[owner] = {}


def _chain_finding(
    pointer: Pointer,
    apex: bytes,
    nodes: dict[bytes, model.Node],
    ents: set[bytes],
    cuts: set[bytes],
    dangling: dict[bytes, bool],
    into: list[Remark],
) -> None:
    """The chain rule for one CNAME record: its warning into ``into``; ``Broken`` for an error."""
    target, _rtype, owner, line = pointer
    nx = dangling.get(target)
    if nx is None:
        try:
            nx = dangling[target] = _check_chain(target, apex, nodes, ents, cuts)
        except _TooDeep:
            raise Broken(CNAME_CHAIN, owner) from None
    if nx:
        into.append((owner, _CNAME, line, cname_to_nxdomain(owner, target)))


class _TooDeep(Exception):
    """A CNAME chain longer than gdnsd allows (``_chain_finding`` says whose)."""


def _check_chain(
    target: bytes,
    apex: bytes,
    nodes: dict[bytes, model.Node],
    ents: set[bytes],
    cuts: set[bytes],
) -> bool:
    """The CNAME chain rule: whether the first hop is a known NXDOMAIN (a warning); _TooDeep for an over-long chain."""
    depth = 1
    first_hop = True
    while within(target, apex):
        if cuts and _cut_above(target, apex, cuts) is not None:
            return False
        node = nodes.get(target)
        if node is not None:
            if _CNAME not in node:
                return False
            nxt = node[_CNAME].rdatas[0]
        elif target in ents:
            return False
        else:
            encloser = target[target[0] + 1 :]
            while encloser not in nodes and encloser not in ents:
                encloser = encloser[encloser[0] + 1 :]
            wild = nodes.get(_WILDCARD + encloser)
            if wild is None:
                return first_hop
            if _CNAME not in wild:
                return False
            nxt = wild[_CNAME].rdatas[0]
        depth += 1
        if depth > MAX_CNAME_CHAIN:
            raise _TooDeep
        target = nxt
        first_hop = False
    return False




def worded(broken: Broken, apex: bytes, path: str, reread: Callable[[frozenset[bytes]], ZonePiece]) -> ZoneError:
    """The error ``broken`` as the operator reads it: gdnsd's verdict, at the line of the record it names.

    Only the lines of NS, CNAME, PTR, MX and SRV records are kept on the
    way (``ZonePiece.targets``); the others a message may name (the first
    record of a type at a name) are found by ``reread``, a second fast
    reading of the zone's file that notes every record at the names given.
    A zone that breaks a rule is refused: this runs once, never for a zone
    that loads.
    """
    rule = broken.rule
    owner = broken.owner
    if broken.message is not None:
        assert broken.at is not None
        return ZoneError(broken.message, *broken.at)
    if rule == NO_SOA:
        return _no_soa(apex, path, owner, reread)
    if rule == NO_NS:
        assert broken.at is not None
        return ZoneError(f"zone '{_text(apex)}' has no NS records", *broken.at)
    if rule == SECOND_SOA:
        assert broken.at is not None
        return ZoneError(f"zone '{_text(apex)}': SOA defined twice", *broken.at)
    if rule == CNAME_BESIDE_DATA and broken.at is None:
        # Found while reading: the first such name in gdnsd's order may come later in the
        # file, and the apex's rules come first (their errors, and their warnings before).
        whole = reread(frozenset())
        apex_node = whole.nodes.get(apex)
        if apex_node is None or whole.soa is None:
            return _no_soa(apex, path, next(iter(whole.nodes), b""), reread)
        apex_ns = apex_node.get(_NS)
        if apex_ns is None:
            return ZoneError(f"zone '{_text(apex)}' has no NS records", whole.soa.path, whole.soa.line)
        first_ns = min(
            line for (kind, at, _), line in zip(whole.targets, whole.target_lines, strict=True)
            if kind == _NS and at == apex
        )
        broken.before = _apex_warnings(whole, apex_ns, first_ns)
        owner = next(
            name for name, node in whole.nodes.items() if isinstance(node, dict) and _CNAME in node and len(node) > 1
        )
        del whole
    watched = frozenset((owner,)) if owner else frozenset()
    zone = reread(watched)

    def first(rtype: int, owners: set[bytes]) -> tuple[bytes, bytes, int]:
        """The first (owner, target, position) of an ``rtype`` record at one of ``owners``, in the reference's order."""
        rank = {name: index for index, name in enumerate(zone.nodes) if name in owners}
        found = [
            (rank[at], position, at, target)
            for (kind, at, target), position in zip(zone.targets, zone.target_lines, strict=True)
            if kind == rtype and at in owners
        ]
        _, position, at, target = min(found)
        return at, target, position

    if rule == CNAME_BESIDE_DATA:
        dyncs = [record for record in zone.dynamic if record.owner == owner and record.rtype == _DYNC]
        if dyncs:  # gdnsd checks where DYNC may be first
            record = dyncs[1] if len(dyncs) > 1 else dyncs[0]
            return ZoneError(
                f"name '{_text(owner)}': DYNC not allowed alongside other data", record.path, record.line
            )
        position = next(line for at, rtype, line in zone.noted if at == owner and rtype != _CNAME)
        return ZoneError(
            f"name '{_text(owner)}': CNAME not allowed alongside other data", *zone.where(path, position)
        )
    if rule in (DATA_AT_CUT, DATA_BELOW_CUT):
        allowed = (_NS, _A, _AAAA) if rule == DATA_AT_CUT else _ADDRESS
        position = next(line for at, rtype, line in zone.noted if at == owner and rtype not in allowed)
        return ZoneError(
            f"name '{_text(owner)}' is inside a delegated subzone, and can only have NS "
            "and/or address records as appropriate",
            *zone.where(path, position),
        )
    if rule == DYNA_BESIDE_ADDRESS:
        position, rtype = next((line, rtype) for at, rtype, line in zone.noted if at == owner and rtype in _ADDRESS)
        return ZoneError(
            f"name '{_text(owner)}': DYNA cannot co-exist at the same name as {'A' if rtype == _A else 'AAAA'}",
            *zone.where(path, position),
        )
    if rule == TOO_MANY_NS:
        lines = [line for (kind, at, _), line in zip(zone.targets, zone.target_lines, strict=True)
                 if kind == _NS and at == owner]
        return ZoneError(
            f"name '{_text(owner)}': too many NS records in one NS RRset ({len(lines)} > {MAX_NS_RRSET})",
            *zone.where(path, lines[MAX_NS_RRSET]),
        )
    if rule == NESTED_DELEGATION:
        cut, _, position = first(_NS, set(broken.targets))
        return ZoneError(f"delegation '{_text(cut)}' is within another delegation", *zone.where(path, position))
    if rule == GLUE_MISSING:
        unglued = set(broken.targets)
        rank = {name: index for index, name in enumerate(zone.nodes)}
        _, position, at, target = min(
            (rank[at], position, at, target)
            for (kind, at, target), position in zip(zone.targets, zone.target_lines, strict=True)
            if kind == _NS and target in unglued
        )
        node = zone.nodes.get(target)
        if node is not None and _DYNA in (node if isinstance(node, dict) else (node.rtype,)):
            return ZoneError(
                f"target nameserver in '{_text(at)} NS {_text(target)}' cannot have DYNA addresses",
                *zone.where(path, position),
            )
        return ZoneError(
            f"missing A and/or AAAA records for target nameserver in '{_text(at)} NS {_text(target)}'",
            *zone.where(path, position),
        )
    assert rule == CNAME_CHAIN, rule
    _, _, position = first(_CNAME, {owner})
    return ZoneError(
        f"CNAME '{_text(owner)}' leads to a CNAME chain more than {MAX_CNAME_CHAIN} deep (a loop?) within the zone",
        *zone.where(path, position),
    )


def _no_soa(apex: bytes, path: str, first: bytes, reread: Callable[[frozenset[bytes]], ZonePiece]) -> ZoneError:
    """The zone has no SOA: said at its first record, where one is expected (gdnsd names no line).

    ``first`` is the first name the file gives records to (``b""``: none; then line 1).
    """
    message = f"zone '{_text(apex)}' has no SOA record"
    if not first:
        return ZoneError(message, path, 1)
    zone = reread(frozenset((first,)))
    position = next(line for at, _, line in zone.noted if at == first)
    return ZoneError(message, *zone.where(path, position))


def _text(name: bytes) -> str:
    return names.to_text(name)
