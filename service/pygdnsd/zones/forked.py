"""Zone files read by several processes at once (``zones_rfc1035_threads``).

gdnsd reads zone files on threads; Python threads would share one
interpreter lock, so this forks worker processes instead. A worker gets a
run of small zone files, or a piece of one big file (``fastload.split``),
reads it with the fast path and sends the result back with ``marshal``;
meanwhile this process reads its own share. Results travel as plain dicts,
tuples and bytes (``_portable_*``), which marshal writes and reads at C
speed, and RRsets are rebuilt here with ``fastload.new_rrset``: that is
what makes the transfer cheaper than the reading.

Anything a worker cannot vouch for (``Irregular``, a strict-mode SOA
warning, a worker that died) comes back as ``None`` and the caller loads
that zone with the reference path, in file order, so the first error and
every warning read exactly as they would without workers. The SOA warnings
of zones a worker read are logged here, in file order, when its result is
taken.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
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
# What a worker sends, per name: a lone RRset as (type, ttl, rdatas), else
# {type: (ttl, rdatas)}.
PortableNodes = dict[bytes, Any]


def _portable_nodes(nodes: dict[bytes, model.Node]) -> PortableNodes:
    return {
        name: {rtype: (rrset.ttl, rrset.rdatas) for rtype, rrset in node.items()}
        if isinstance(node, dict)
        else (node.rtype, node.ttl, node.rdatas)
        for name, node in nodes.items()
    }


def _rebuilt_nodes(portable: PortableNodes) -> dict[bytes, model.Node]:
    """``portable`` turned back into RRsets, in place (the dicts are fresh from marshal)."""
    new_rrset = fastload.new_rrset
    nodes = portable
    empty = fastload.EMPTY_NODE
    for name, node in nodes.items():
        if type(node) is tuple:
            nodes[name] = new_rrset(*node)
        elif not node:
            nodes[name] = empty  # shared again, as the fast path builds it
        else:
            for rtype, (ttl, rdatas) in node.items():
                node[rtype] = new_rrset(rtype, ttl, rdatas)
    return nodes


def _portable_zone(zone: model.Zone | None) -> tuple[Any, ...] | None:
    if zone is None:
        return None
    return (zone.apex, zone.serial, _portable_nodes(zone.nodes), tuple(zone.cuts), zone.source)


def _rebuilt_zone(portable: tuple[Any, ...] | None) -> model.Zone | None:
    if portable is None:
        return None
    apex, serial, nodes, cuts, source = portable
    rebuilt = _rebuilt_nodes(nodes)
    return model.Zone(apex, serial, rebuilt[apex][model.SOA], rebuilt, frozenset(cuts), source)


def _portable_piece(piece: fastload.ZonePiece | None) -> tuple[Any, ...] | None:
    if piece is None:
        return None
    soa = piece.soa
    record = None if soa is None else (soa.owner, soa.rtype, soa.ttl, soa.rdata, soa.path, soa.line, soa.dyn_min)
    return (piece.apex, _portable_nodes(piece.nodes), piece.targets, record, piece.deep)


def _rebuilt_piece(portable: object, known: dict[bytes, model.Node]) -> fastload.ZonePiece | None:
    """A worker's piece; its names not in ``known`` (the earlier pieces) go straight there.

    Only the names both hold stay in the piece, for ``fastload.merge``: no
    second pass over the worker's names.
    """
    if not isinstance(portable, tuple):
        return None
    apex, nodes, targets, record, deep = portable
    new_rrset = fastload.new_rrset
    shared: dict[bytes, model.Node] = {}
    while nodes:
        name, node = nodes.popitem()  # each portable node is freed as soon as it is rebuilt
        if type(node) is tuple:
            built: model.Node = new_rrset(*node)
        else:
            built = {rtype: new_rrset(rtype, ttl, rdatas) for rtype, (ttl, rdatas) in node.items()}
        if name in known:
            shared[name] = built
        else:
            known[name] = built
    piece = fastload.ZonePiece(apex)
    piece.nodes = shared
    piece.targets = targets
    piece.deep = deep
    piece.soa = None if record is None else Record(*record)
    return piece


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
        answers = [worker.result() for worker in workers]
        if first is None:
            return None
        with fastload.collector_paused():
            for answer in answers:
                piece = _rebuilt_piece(answer, first.nodes)
                if piece is None:
                    return None
                fastload.merge(first, piece)
            return fastload.finish(first, path, settings, Reporter(settings.strict_data))
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
