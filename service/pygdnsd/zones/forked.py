"""Zone files read by several processes at once (``zones_rfc1035_threads``).

gdnsd reads zone files on threads; Python threads would share one
interpreter lock, so this forks worker processes instead. A worker gets a
run of small zone files, or a piece of one big file (``fastload.split``),
reads it with the fast path and sends the result back with ``marshal``;
meanwhile this process reads its own share. Results travel as plain lists,
dicts, tuples and bytes (``_portable_*``), which marshal writes and reads at
C speed, RRsets as columns that are rebuilt here in C loops (``_rrsets``):
that is what makes the transfer cheaper than the reading. A piece of a big
file is checked by its worker as far as it can be alone
(``fastload.piece_leads``), so what runs here after the workers finish, on
one core, is the rebuilding and the checks across pieces.

Anything a worker cannot vouch for (``Irregular``, a strict-mode SOA
warning, a worker that died) comes back as ``None`` and the caller loads
that zone with the reference path, in file order, so the first error and
every warning read exactly as they would without workers. The SOA warnings
of zones a worker read are logged here, in file order, when its result is
taken.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import logging
import marshal
import operator
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from pygdnsd.errors import ZoneError
from pygdnsd.zones import fastload, model
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.tree import Reporter
from pygdnsd.zones.zonefile import Record

log = logging.getLogger("pygdnsd.zones")

# Below these sizes a fork costs more than it saves.
SPLIT_BYTES = 4 << 20
BATCH_BYTES = 1 << 20
# How much more reading this process takes than each worker: workers also
# encode what they send (dearer than decoding it here). 0.56 of it with one worker.
OWN_WEIGHT = 1.27


def _own_share(processes: int) -> float:
    """This process's fraction of the reading when ``processes`` share it."""
    return OWN_WEIGHT / (OWN_WEIGHT + processes - 1)

Warning_ = tuple[str, str, int | None]
# What a worker sends for a dict of nodes: the lone RRsets as columns (names,
# types, TTLs, rdatas), and the other nodes as {name: {type: (ttl, rdatas)}}.
PortableNodes = tuple[list[bytes], list[int], list[int], list[tuple[bytes, ...]], dict[bytes, Any]]

_RRSET_FIELDS = vars(model.RRset)
_rtype_of = operator.attrgetter("rtype")
_ttl_of = operator.attrgetter("ttl")
_rdatas_of = operator.attrgetter("rdatas")


def _portable_nodes(nodes: dict[bytes, model.Node]) -> PortableNodes:
    lone = [node for node in nodes.values() if not isinstance(node, dict)]
    if len(lone) == len(nodes):
        names = list(nodes)
        others = {}
    else:
        names = [name for name, node in nodes.items() if not isinstance(node, dict)]
        others = {
            name: {rtype: (rrset.ttl, rrset.rdatas) for rtype, rrset in node.items()}
            for name, node in nodes.items()
            if isinstance(node, dict)
        }
    return names, list(map(_rtype_of, lone)), list(map(_ttl_of, lone)), list(map(_rdatas_of, lone)), others


def _rrsets(rtypes: list[int], ttls: list[int], rdatas: list[tuple[bytes, ...]]) -> list[model.RRset]:
    """``fastload.new_rrset`` over columns, with the loops in C: no Python frame per RRset."""
    out = list(map(model.RRset.__new__, itertools.repeat(model.RRset, len(rtypes))))
    for field, values in (("rtype", rtypes), ("ttl", ttls), ("rdatas", rdatas)):
        collections.deque(map(_RRSET_FIELDS[field].__set__, out, values), maxlen=0)
    return out


def _add_nodes(portable: PortableNodes, into: dict[bytes, model.Node]) -> dict[bytes, model.Node]:
    """``portable``'s nodes added to ``into``, but for the names ``into`` holds already: those are returned."""
    names, rtypes, ttls, rdatas, others = portable
    rrsets = _rrsets(rtypes, ttls, rdatas)
    # One hash lookup per name, in C: setdefault adds a new name and hands back a held one's node.
    held = list(map(into.setdefault, names, rrsets))
    shared: dict[bytes, model.Node] = {}
    if not all(map(operator.is_, held, rrsets)):
        shared = {name: rrset for name, have, rrset in zip(names, held, rrsets, strict=True) if have is not rrset}
    new_rrset = fastload.new_rrset
    for name, node in others.items():  # the dicts are fresh from marshal: filled in place
        if node:
            for rtype, (ttl, data) in node.items():
                node[rtype] = new_rrset(rtype, ttl, data)
        else:
            node = fastload.EMPTY_NODE  # shared again, as the fast path builds it
        if into.setdefault(name, node) is not node:
            shared[name] = node
    return shared


def _portable_zone(zone: model.Zone | None) -> tuple[Any, ...] | None:
    if zone is None:
        return None
    return (zone.apex, zone.serial, _portable_nodes(zone.nodes), tuple(zone.cuts), zone.source)


def _rebuilt_zone(portable: tuple[Any, ...] | None) -> model.Zone | None:
    if portable is None:
        return None
    apex, serial, nodes, cuts, source = portable
    rebuilt: dict[bytes, model.Node] = {}
    _add_nodes(nodes, rebuilt)
    return model.Zone(apex, serial, rebuilt[apex][model.SOA], rebuilt, frozenset(cuts), source)


def _portable_piece(piece: fastload.ZonePiece | None) -> tuple[Any, ...] | None:
    """The piece and what its names leave to check (``fastload.piece_leads``): its targets stay here."""
    if piece is None:
        return None
    try:
        leads = fastload.piece_leads(piece)
    except fastload.Irregular:
        return None
    soa = piece.soa
    record = None if soa is None else (soa.owner, soa.rtype, soa.ttl, soa.rdata, soa.path, soa.line, soa.dyn_min)
    ((cuts, ancestors, cut_parents),) = leads.parts
    # Lists, not sets: marshal writes a set several times slower.
    portable_leads = (
        (list(leads.used), leads.unused, leads.ns, leads.mx, leads.chains, leads.plain),
        (list(cuts), list(ancestors), list(cut_parents)),
    )
    return (piece.apex, _portable_nodes(piece.nodes), record, piece.deep, portable_leads)


def _rebuilt_piece(
    portable: object, known: dict[bytes, model.Node]
) -> tuple[fastload.ZonePiece, fastload.Leads] | None:
    """A worker's piece; its names not in ``known`` (the earlier pieces) go straight there.

    Only the names both hold stay in the piece, for ``fastload.merge``.
    """
    if not isinstance(portable, tuple):
        return None
    apex, nodes, record, deep, leads = portable
    shared = _add_nodes(nodes, known)
    piece = fastload.ZonePiece(apex)
    piece.nodes = shared
    piece.deep = deep
    piece.soa = None if record is None else Record(*record)
    (used, unused, ns, mx, chains, plain), (cuts, ancestors, cut_parents) = leads
    part = (set(cuts), set(ancestors), set(cut_parents))
    return piece, fastload.Leads(set(used), unused, ns, mx, chains, plain, [part], set(shared))


class _Deferred(Reporter):
    """A worker's SOA warnings, kept to be logged by the parent in file order."""

    def __init__(self, strict: bool) -> None:
        super().__init__(strict)
        self.messages: list[Warning_] = []

    def warn(self, message: str, path: str, line: int | None, strictable: bool = True) -> None:
        if self.strict and strictable:
            super().warn(message, path, line, strictable)
        self.messages.append((message, path, line))


class _Worker:
    """A forked child computing ``job()`` (plain data); ``result()`` is its answer, or ``None``."""

    def __init__(self, job: Callable[[], Any]) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running the parent's cleanups
            code = 1
            try:
                os.close(read_fd)
                answer = job()
                # Encode it all before writing: streaming into the pipe would stall on the
                # parent, which reads only once its own share is done.
                data = marshal.dumps(answer)
                del answer
                with os.fdopen(write_fd, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self.read_fd = read_fd
        self.reaped = False

    def result(self) -> object:
        try:
            # All of it, then decode: marshal.load on the file would read it in
            # small pieces, at several times the cost of decoding.
            with os.fdopen(self.read_fd, "rb") as source:
                data = source.read()
            with fastload.collector_paused():
                answer = marshal.loads(data)
            del data
        except (EOFError, ValueError, TypeError, OSError):  # a worker that died mid-way
            answer = None
        self.reap()
        return answer

    def reap(self) -> None:
        if self.reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.reaped = True


def _fast(path: str, apex: bytes, settings: ZoneSettings) -> model.Zone | None:
    try:
        return fastload.load_zone(path, apex, settings)
    except fastload.Irregular:
        return None


def _read_group(group: list[tuple[str, bytes]], settings: ZoneSettings) -> list[tuple[Any, list[Warning_]]]:
    """Each zone of ``group`` (portable, or None) with its deferred warnings."""
    out: list[tuple[Any, list[Warning_]]] = []
    for path, apex in group:
        report = _Deferred(settings.strict_data)
        try:
            out.append((_portable_zone(fastload.load_zone(path, apex, settings, report)), report.messages))
        except (fastload.Irregular, ZoneError):
            out.append((None, []))
    return out


def _groups(files: list[tuple[str, bytes]], sizes: list[int], count: int) -> list[list[tuple[str, bytes]]]:
    """``files`` in ``count`` contiguous runs of about equal bytes (this process's, the first, a little larger)."""
    total = sum(sizes) or 1
    own = _own_share(count)
    shares = [own] + [(1 - own) / (count - 1)] * (count - 1)
    groups: list[list[tuple[str, bytes]]] = [[] for _ in range(count)]
    index = 0
    bound = shares[0] * total
    done = 0
    for item, size in zip(files, sizes, strict=True):
        while index < count - 1 and done >= bound:
            index += 1
            bound += shares[index] * total
        groups[index].append(item)
        done += size
    return groups


def _batch(
    files: list[tuple[str, bytes]], sizes: list[int], settings: ZoneSettings
) -> Iterator[tuple[str, bytes, model.Zone | None]]:
    groups = _groups(files, sizes, settings.threads)
    workers = [_Worker(functools.partial(_read_group, group, settings)) for group in groups[1:] if group]
    try:
        for path, apex in groups[0]:
            yield path, apex, _fast(path, apex, settings)
        for group, worker in zip((g for g in groups[1:] if g), workers, strict=True):
            answer = worker.result()
            results = answer if isinstance(answer, list) and len(answer) == len(group) else [(None, [])] * len(group)
            replay = Reporter(False)
            for (path, apex), (portable, messages) in zip(group, results, strict=True):
                for message, where, line in messages:
                    replay.warn(message, where, line, strictable=False)
                with fastload.collector_paused():
                    zone = _rebuilt_zone(portable)
                yield path, apex, zone
    finally:
        for worker in workers:
            worker.reap()


def _split(path: str, apex: bytes, settings: ZoneSettings) -> model.Zone | None:
    """One big file read in pieces, one per process, merged in file order."""
    try:
        text = fastload.read_text(path)
        pieces = fastload.split(text, apex, settings, settings.threads, _own_share(settings.threads))
    except fastload.Irregular:
        return None
    source = [text]  # dropped once this process has read its piece
    del text

    def read(begin: int, end: int, start: fastload.Start) -> fastload.ZonePiece | None:
        try:
            with fastload.collector_paused():
                return fastload.parse_piece(source[0][begin:end].split("\n"), path, apex, settings, start)
        except fastload.Irregular:
            return None

    def read_portable(begin: int, end: int, start: fastload.Start) -> tuple[Any, ...] | None:
        return _portable_piece(read(begin, end, start))

    workers = [_Worker(functools.partial(read_portable, *piece)) for piece in pieces[1:]]
    try:
        first = read(*pieces[0])
        source.clear()
        if first is None:
            return None
        with fastload.collector_paused():
            # While the workers still read: the leads, and freeing what only they needed.
            leads = fastload.piece_leads(first)
            first.targets = []
            first.multi = {}
            for worker in workers:
                got = _rebuilt_piece(worker.result(), first.nodes)
                if got is None:
                    return None
                piece, more = got
                fastload.merge(first, piece)
                leads.absorb(more)
            return fastload.finish(first, path, settings, Reporter(settings.strict_data), leads)
    except fastload.Irregular:
        return None
    finally:
        for worker in workers:
            worker.reap()


def load(files: list[tuple[str, bytes]], settings: ZoneSettings) -> Iterator[tuple[str, bytes, model.Zone | None]]:
    """(path, apex, zone) per file in order; ``None`` where the reference path must read it."""
    sizes = []
    for path, _apex in files:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(0)
    parallel = settings.threads > 1
    i = 0
    while i < len(files):
        if parallel and sizes[i] >= SPLIT_BYTES:
            path, apex = files[i]
            yield path, apex, _split(path, apex, settings)
            i += 1
            continue
        j = i
        while j < len(files) and not (parallel and sizes[j] >= SPLIT_BYTES):
            j += 1
        if parallel and j - i > 1 and sum(sizes[i:j]) >= BATCH_BYTES:
            yield from _batch(files[i:j], sizes[i:j], settings)
        else:
            for path, apex in files[i:j]:
                yield path, apex, _fast(path, apex, settings)
        i = j
