"""One zone file -> ``model.Zone``: parsed (``parsing``), checked (``rules``), built.

Every zone file is read this way, whatever its syntax (the one parser may
read a rare record more slowly, that record alone). A zone read here
equals what the reference path (a slow reader then ``tree.build_zone``,
since removed) built, with the same warnings at the same lines, in the same
order (``tests/test_zone_fastload.py`` checks it against that path's
recorded results). A zone that breaks a whole-zone rule raises
``ZoneError``, worded by ``rules.worded``; a syntax error raises
``parsing.RefusedRecord`` (a ``ZoneError``: ``file:line``), the first in
file order. DYNA/DYNC are checked here too, with the resolver plugins.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from pygdnsd.errors import ZoneError
from pygdnsd.zones import model
from pygdnsd.zones.messages import DynamicTargets, Reporter, soa_rrset
from pygdnsd.zones.parsing import (
    EMPTY_NODE,
    Broken,
    Irregular,
    Remark,
    ZonePiece,
    parse_piece,
    within,
)
from pygdnsd.zones.rules import (
    Unsettled,
    check_piece,
    check_zone,
    drop_unused_glue,
    glue_findings,
    in_data_order,
    worded,
)
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.source import open_zone_text

__all__ = ["collector_paused", "finish", "load_zone"]


def load_zone(
    path: str,
    apex: bytes,
    settings: ZoneSettings,
    report: Reporter | None = None,
    plugins: DynamicTargets | None = None,
    dynamic: bool = True,
) -> model.Zone:
    """The zone in ``path``; its first problem raises ``ZoneError``.

    The warnings go to ``report`` (by default, the log). ``plugins`` check
    DYNA/DYNC targets (without them, a zone holding one is refused); with
    ``dynamic`` False a zone holding one is ``Irregular`` (a worker process
    does not send DYNA/DYNC RRsets: the zone is read where it is served).
    """
    if report is None:
        report = Reporter(settings.strict_data)
    handle = open_zone_text(path)
    # The file's lines one at a time: no copy of the text, no list of its lines.
    with handle, collector_paused():
        try:
            zone = parse_piece(handle, path, apex, settings)
        except Broken as broken:
            raise _worded(broken, path, apex, settings, report) from None
        if zone.dynamic and not dynamic:
            raise Irregular("DYNA/DYNC")
        return finish(zone, path, settings, report, plugins=plugins)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic GC while building: it would walk the growing, cycle-free tree again and again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def finish(
    zone: ZonePiece,
    path: str,
    settings: ZoneSettings,
    report: Reporter,
    unsettled: Unsettled | None = None,
    plugins: DynamicTargets | None = None,
) -> model.Zone:
    """The checks, then the ``Zone``; the warnings go to ``report``.

    ``unsettled`` is the pieces' (``check_piece``) when ``zone`` was read in
    pieces; ``plugins`` check DYNA/DYNC targets.
    """
    apex = zone.apex
    try:
        verdict = check_zone(zone, check_piece(zone) if unsettled is None else unsettled, plugins)
    except Broken as broken:
        raise _worded(broken, path, apex, settings, report, zone) from None
    noted = zone.noted
    if verdict.unused_glue:
        noted = _watched(path, apex, settings, verdict.unused_glue)
    glue = glue_findings(apex, noted, verdict)
    # Unused glue outside the zone goes, and unused glue's addresses are not served: the
    # reference drops them before it looks at TTLs, so their TTLs earn no warning.
    outside_unused = {owner for owner, _, _ in zone.noted if not within(owner, apex)}.difference(verdict.used)
    dropped = outside_unused.union(verdict.unused_glue)
    clamped = [remark for remark in zone.clamped if not _served_no_more(remark, dropped)]
    ttl_warnings = [remark for remark in zone.ttl_warnings if not _served_no_more(remark, dropped)]
    assert zone.soa is not None
    error = verdict.chain_error
    if error is not None:
        # The warnings gdnsd writes before it finds the chain: the apex's, the glue's, the
        # records' at the names before the chain's (under strict_data the first is the error).
        nodes = zone.nodes
        wanted = {error.owner, *(remark[0] for remark in verdict.records)}
        rank = {name: index for index, name in enumerate(nodes) if name in wanted}
        earlier = [remark for remark in verdict.records if rank[remark[0]] < rank[error.owner]]
        for position, message in verdict.at_apex + in_data_order(nodes, glue, earlier, [], [])[0]:
            report.warn(message, *zone.where(path, position))
        raise _worded(error, path, apex, settings, report)
    before_soa, after_soa = in_data_order(zone.nodes, glue, verdict.records, clamped, ttl_warnings)
    # In the reference's order; under zones_strict_data the first that may be an error is
    # (``report`` raises it), the TTL clamps before it written as warnings.
    for position, message in verdict.at_apex + before_soa:
        report.warn(message, *zone.where(path, position))
    soa, serial = soa_rrset(apex, zone.soa, settings, report)
    for position, message, strictable in after_soa:
        report.warn(message, *zone.where(path, position), strictable=strictable)
    nodes = zone.nodes
    drop_unused_glue(nodes, verdict, outside_unused)
    apex_node = nodes[apex]
    assert isinstance(apex_node, dict)  # it holds the SOA and the NS at least
    apex_node[model.SOA] = soa
    nodes.update(dict.fromkeys(verdict.ents, EMPTY_NODE))
    return model.Zone(apex, serial, soa, nodes, frozenset(verdict.cuts), path)


def _served_no_more(remark: Remark, dropped: set[bytes]) -> bool:
    return remark[0] in dropped and remark[1] in (model.A, model.AAAA, model.DYNA)


def _worded(
    broken: Broken, path: str, apex: bytes, settings: ZoneSettings, report: Reporter, zone: ZonePiece | None = None
) -> ZoneError:
    """``broken``'s error, once the warnings gdnsd writes before it are written (the first may be the error).

    Their positions are ``zone``'s, or, found on a second reading (``rules.worded``), that reading's.
    """
    reading: list[ZonePiece] = []

    def reread(owners: frozenset[bytes]) -> ZonePiece:
        reading[:] = [_reread(path, apex, settings, owners)]
        return reading[0]

    error = worded(broken, apex, path, reread)
    read = zone if zone is not None else reading[0] if reading else None
    for position, message in broken.before:
        assert read is not None  # warnings come from a reading
        report.warn(message, *read.where(path, position))
    return error


def _watched(path: str, apex: bytes, settings: ZoneSettings, owners: list[bytes]) -> list[tuple[bytes, int, int]]:
    """The records at ``owners`` and outside the zone, with their lines: the file read again.

    Only for unused glue, whose lines the first reading does not keep (it
    would have to for every address record); rare enough for a second pass.
    """
    return _reread(path, apex, settings, frozenset(owners)).noted


def _reread(path: str, apex: bytes, settings: ZoneSettings, owners: frozenset[bytes]) -> ZonePiece:
    """The file read again, noting the records at ``owners``, for the lines of records a message names.

    The rules checked while reading are let pass (the zone is known to break one).
    """
    with open_zone_text(path) as handle:
        return parse_piece(handle, path, apex, settings, watch=owners, lenient=True)

