"""Zone files read by several processes at once (``zones_rfc1035_threads``): parallel loading.

gdnsd reads zone files on threads; Python threads would share one
interpreter lock, so this forks worker processes instead. A worker gets a
run of small zone files, or a piece of one big file (``pieces.split``),
reads it with the fast path and sends the result back with ``marshal``;
meanwhile this process reads its own share. Results travel as plain lists,
dicts, tuples and bytes (``_portable_*``), which marshal writes and reads at
C speed, RRsets as columns that are rebuilt here in C loops (``parsing.new_rrsets``):
that is what makes the transfer cheaper than the reading. A piece of a big
file is checked by its worker as far as it can be alone
(``rules.check_piece``), so what runs here after the workers finish, on
one core, is the rebuilding and the checks across pieces.

A zone a worker finds in error comes back worded (``PortableError``) and
is raised here in its turn, in file order, so the first error reads
exactly as it would without workers; a file read in pieces that does not
go together (an error, a worker that died) is read again in one pass.
What a worker leaves (a zone with DYNA/DYNC, whose RRsets do not travel;
a worker that died) is read here in its turn. The
warnings of zones a worker read are logged here, in file order, when its
result is taken; those of a file read in pieces, once the pieces are merged.
"""

from __future__ import annotations

import array
import contextlib
import functools
import logging
import marshal
import mmap
import operator
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from pygdnsd.errors import ZoneError
from pygdnsd.zones import fastload, model, parsing, pieces, rules
from pygdnsd.zones.messages import DynamicTargets, Reporter
from pygdnsd.zones.model import Record
from pygdnsd.zones.settings import ZoneSettings

log = logging.getLogger("pygdnsd.zones")

# Below these sizes a fork costs more than it saves.
SPLIT_BYTES = 4 << 20
BATCH_BYTES = 1 << 20
# How much more reading this process takes than each worker: workers also
# encode what they send (dearer than decoding it here). 0.56 of it with one worker.
OWN_WEIGHT = 1.27
# The same for the pieces of one big file, where this process decodes a
# worker's first piece while the worker reads its second, last one (that
# fraction of its share): they come out even, as measured on the 1M bench zone.
OWN_PIECE_WEIGHT = 1.0
LAST_PIECE = 0.2


def _own_share(processes: int, weight: float = OWN_WEIGHT) -> float:
    """This process's fraction of the reading when ``processes`` share it."""
    return weight / (weight + processes - 1)


def _piece_shares(processes: int) -> list[float]:
    """The fractions of a big file each piece is: this process's, then two per worker."""
    own = _own_share(processes, OWN_PIECE_WEIGHT)
    each = (1 - own) / (processes - 1)
    return [own] + [each * (1 - LAST_PIECE), each * LAST_PIECE] * (processes - 1)

Warning_ = tuple[str, str, int | None]
# What a worker sends for a dict of nodes: the lone RRsets as columns (names,
# types, TTLs, rdatas), and the other nodes as {name: {type: (ttl, rdatas)}}.
PortableNodes = tuple[list[bytes], list[int], list[int], list[tuple[bytes, ...]], dict[bytes, Any], list[int]]

_rtype_of = operator.attrgetter("rtype")
_ttl_of = operator.attrgetter("ttl")
_rdatas_of = operator.attrgetter("rdatas")


def _portable_nodes(nodes: dict[bytes, model.Node]) -> PortableNodes:
    """The nodes as columns, and the others with, for each, how many lone names come before it.

    The places keep the names' order, which is the order they first appear
    in the file: the order the reference writes warnings in (``rules.in_data_order``).
    """
    lone = [node for node in nodes.values() if not isinstance(node, dict)]
    names: list[bytes] = []
    others: dict[bytes, Any] = {}
    places: list[int] = []
    if len(lone) == len(nodes):
        names = list(nodes)
    else:
        for name, node in nodes.items():
            if isinstance(node, dict):
                others[name] = {rtype: (rrset.ttl, rrset.rdatas) for rtype, rrset in node.items()}
                places.append(len(names))
            else:
                names.append(name)
    columns = list(map(_rtype_of, lone)), list(map(_ttl_of, lone)), list(map(_rdatas_of, lone))
    return names, *columns, others, places


def _add_nodes(portable: PortableNodes, into: dict[bytes, model.Node]) -> dict[bytes, model.Node]:
    """``portable``'s nodes added to ``into`` in their order, but for the names ``into`` holds already: those are returned."""
    names, rtypes, ttls, rdatas, others, places = portable
    rrsets = parsing.new_rrsets(rtypes, ttls, rdatas)
    # One hash lookup per name, in C: setdefault adds a new name and hands back a held one's node.
    claim = into.setdefault
    shared: dict[bytes, model.Node] = {}
    held: list[model.Node] = []
    done = 0
    new_rrset = parsing.new_rrset
    for (name, node), place in zip(others.items(), places, strict=True):  # the dicts are fresh from marshal
        if place > done:
            held += map(claim, names[done:place], rrsets[done:place])
            done = place
        if node:
            for rtype, (ttl, data) in node.items():
                node[rtype] = new_rrset(rtype, ttl, data)
        else:
            node = parsing.EMPTY_NODE  # shared again, as the fast path builds it
        if claim(name, node) is not node:
            shared[name] = node
    held += map(claim, names[done:], rrsets[done:]) if done else map(claim, names, rrsets)
    if not all(map(operator.is_, held, rrsets)):
        shared.update((name, rrset) for name, have, rrset in zip(names, held, rrsets, strict=True) if have is not rrset)
    return shared


def _portable_zone(zone: model.Zone) -> tuple[Any, ...]:
    return (zone.apex, zone.serial, _portable_nodes(zone.nodes), tuple(zone.cuts), zone.source)


def _rebuilt_zone(portable: tuple[Any, ...]) -> model.Zone:
    apex, serial, nodes, cuts, source = portable
    rebuilt: dict[bytes, model.Node] = {}
    _add_nodes(nodes, rebuilt)
    return model.Zone(apex, serial, rebuilt[apex][model.SOA], rebuilt, frozenset(cuts), source)


def _portable_piece(piece: parsing.ZonePiece | None) -> tuple[Any, ...] | None:
    """The piece and what its names leave to check (``rules.check_piece``): its targets stay here."""
    if piece is None or piece.files or piece.dynamic:
        # A piece that $INCLUDEs (the last: split looks at the others' directives), or holds
        # DYNA/DYNC (their RRsets do not travel), is read in one pass.
        return None
    try:
        unsettled = rules.check_piece(piece)
    except parsing.Irregular:
        return None
    soa = piece.soa
    record = None if soa is None else (soa.owner, soa.rtype, soa.ttl, soa.rdata, soa.path, soa.line, soa.dyn_min)
    ((cuts, ancestors, cut_parents),) = unsettled.per_piece
    # Lists, not sets: marshal writes a set several times slower.
    portable_unsettled = (
        (list(unsettled.used), unsettled.unused, unsettled.ns, unsettled.mx, unsettled.chains, unsettled.plain),
        (list(cuts), list(ancestors), list(cut_parents)),
        (unsettled.warnings, unsettled.apex_ns_lines),
    )
    return (
        piece.apex, _portable_nodes(piece.nodes), record, piece.deep, portable_unsettled,
        piece.clamped, piece.ttl_warnings, piece.noted,
    )


def _rebuilt_piece(
    portable: object, known: dict[bytes, model.Node]
) -> tuple[parsing.ZonePiece, rules.Unsettled] | None:
    """A worker's piece; its names not in ``known`` (the earlier pieces) go straight there.

    Only the names both hold stay in the piece, for ``fastload.merge``.
    """
    if not isinstance(portable, tuple):
        return None
    apex, nodes, record, deep, unsettled, clamped, ttl_warnings, noted = portable
    shared = _add_nodes(nodes, known)
    piece = parsing.ZonePiece(apex)
    piece.nodes = shared
    piece.deep = deep
    piece.clamped = clamped
    piece.ttl_warnings = ttl_warnings
    piece.noted = noted
    piece.soa = None if record is None else Record(*record)
    piece.soa_position = 0 if piece.soa is None else piece.soa.line  # a piece includes no file
    (used, unused, ns, mx, chains, plain), (cuts, ancestors, cut_parents), (warnings, apex_ns_lines) = unsettled
    part = (set(cuts), set(ancestors), set(cut_parents))
    return piece, rules.Unsettled(
        set(used), unused, ns, mx, chains, plain, [part], warnings, apex_ns_lines, set(shared)
    )


class _Deferred(Reporter):
    """A worker's warnings, kept to be logged by the parent in file order."""

    def __init__(self, strict: bool) -> None:
        super().__init__(strict)
        self.messages: list[Warning_] = []

    def warn(self, message: str, path: str, line: int | None, strictable: bool = True) -> None:
        if self.strict and strictable:
            super().warn(message, path, line, strictable)
        self.messages.append((message, path, line))


_DONE = b"+"  # a worker's word on its pipe: the next answer is complete


class _Worker:
    """A forked child computing each of ``jobs`` (plain data) in turn; ``result()`` is the next answer, or ``None``.

    Each answer goes to a file in memory of its own, so the child never
    waits on this process (which reads only once its own share is done),
    and this process takes the first answers while the child still
    computes the last.
    """

    def __init__(self, jobs: list[Callable[[], Any]]) -> None:
        self.files = [_scratch_file() for _ in jobs]
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running the parent's cleanups
            code = 1
            try:
                os.close(read_fd)
                for job, fd in zip(jobs, self.files, strict=True):
                    data = marshal.dumps(job())
                    with open(fd, "wb", closefd=False) as out:
                        out.write(data)
                    del data
                    os.write(write_fd, _DONE)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self.read_fd = read_fd
        self.taken = 0
        self.reaped = False

    def result(self) -> object:
        fd = self.files[self.taken]
        self.taken += 1
        try:
            if os.read(self.read_fd, 1) != _DONE:
                raise EOFError  # the worker died before this answer was complete
            # Decoded from the mapped file: no copy of it first.
            with mmap.mmap(fd, os.fstat(fd).st_size, access=mmap.ACCESS_READ) as data, fastload.collector_paused():
                answer = marshal.loads(data)
        except (EOFError, ValueError, TypeError, OSError):
            answer = None
        finally:
            os.close(fd)
        if self.taken == len(self.files):
            self.reap()
        return answer

    def reap(self) -> None:
        if self.reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        for fd in [self.read_fd, *self.files[self.taken :]]:
            os.close(fd)
        self.reaped = True


def _scratch_file() -> int:
    """An empty file in memory (on disk where memfd is missing), open for reading and writing."""
    try:
        return os.memfd_create("pygdnsd-zone-piece", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        handle, name = tempfile.mkstemp(prefix="pygdnsd-zone-piece")
        os.unlink(name)
        return handle


# A zone's error as a worker sends it: (problem, path, line).
PortableError = tuple[str, "str | None", "int | None"]


def _read_group(
    group: list[tuple[str, bytes]], settings: ZoneSettings
) -> list[tuple[Any, list[Warning_], PortableError | None]]:
    """Each zone of ``group`` (portable, or None) with its deferred warnings, and its error if it has one.

    A zone's error is sent as worded, for this process to raise in its turn.
    """
    out: list[tuple[Any, list[Warning_], PortableError | None]] = []
    for path, apex in group:
        report = _Deferred(settings.strict_data)
        try:
            zone = fastload.load_zone(path, apex, settings, report, dynamic=False)
            out.append((_portable_zone(zone), report.messages, None))
        except ZoneError as exc:
            out.append((None, report.messages, (exc.problem, exc.path, exc.line)))
        except parsing.Irregular:
            out.append((None, [], None))
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
    files: list[tuple[str, bytes]], sizes: list[int], settings: ZoneSettings, plugins: DynamicTargets | None
) -> Iterator[tuple[bytes, model.Zone]]:
    groups = _groups(files, sizes, settings.threads)
    workers = [_Worker([functools.partial(_read_group, group, settings)]) for group in groups[1:] if group]
    try:
        for path, apex in groups[0]:
            yield apex, fastload.load_zone(path, apex, settings, plugins=plugins)
        for group, worker in zip((g for g in groups[1:] if g), workers, strict=True):
            answer = worker.result()
            fallback: list[tuple[Any, list[Warning_], PortableError | None]] = [(None, [], None)] * len(group)
            results = answer if isinstance(answer, list) and len(answer) == len(group) else fallback
            replay = Reporter(False)
            for (path, apex), (portable, messages, error) in zip(group, results, strict=True):
                for message, where, line in messages:
                    replay.warn(message, where, line, strictable=False)
                if error is not None:
                    raise ZoneError(*error)
                if portable is None:
                    # What the worker left (DYNA/DYNC, whose RRsets do not travel; a worker that died): read here.
                    yield apex, fastload.load_zone(path, apex, settings, plugins=plugins)
                    continue
                with fastload.collector_paused():
                    zone = _rebuilt_zone(portable)
                yield apex, zone
    finally:
        for worker in workers:
            worker.reap()


class _OnePass(Exception):
    """The pieces do not go together (an RRset whose TTLs disagree across them, a piece a worker
    could not read), but one pass over the whole file may still read the zone."""


def _split(path: str, apex: bytes, settings: ZoneSettings, plugins: DynamicTargets | None = None) -> model.Zone:
    """One big file read in pieces, one per process, merged in file order; else in one pass."""
    try:
        return _in_pieces(path, apex, settings, plugins)
    except _OnePass:
        pass  # out of the except block first: its traceback would keep the pieces alive
    return fastload.load_zone(path, apex, settings, plugins=plugins)


def _in_pieces(path: str, apex: bytes, settings: ZoneSettings, plugins: DynamicTargets | None) -> model.Zone:
    try:
        text = pieces.read_text(path)
        cuts = pieces.split(text, apex, settings, 0, shares=_piece_shares(settings.threads))
    except parsing.Irregular:
        raise _OnePass from None  # e.g. an $INCLUDE
    source = [text]  # dropped once this process has read its piece
    del text

    def read(begin: int, end: int, start: parsing.Start) -> parsing.ZonePiece | None:
        try:
            with fastload.collector_paused():
                lines = source[0][begin:end].split("\n")
                return parsing.parse_piece(lines, path, apex, settings, start, ends_file=end == len(source[0]))
        except parsing.RefusedRecord:
            if begin:
                return None  # a later piece's: an earlier piece may hold an earlier error
            raise
        except parsing.Irregular:
            return None

    def read_portable(begin: int, end: int, start: parsing.Start) -> tuple[Any, ...] | None:
        return _portable_piece(read(begin, end, start))

    # Each worker reads two pieces, the second smaller: this process rebuilds the
    # first while the worker reads it, and only a little is left once it ends.
    groups = [cuts[i : i + 2] for i in range(1, len(cuts), 2)]
    workers = [_Worker([functools.partial(read_portable, *piece) for piece in group]) for group in groups]
    try:
        first = read(*cuts[0])
        source.clear()
        if first is None:
            raise _OnePass  # one pass finds the first error, if that was one
        with fastload.collector_paused():
            # While the workers still read: what is unsettled, and freeing what only they needed.
            unsettled = rules.check_piece(first)
            first.targets = []
            first.target_lines = array.array("q")
            first.multi = {}
            for worker, group in zip(workers, groups, strict=True):
                for _ in group:
                    got = _rebuilt_piece(worker.result(), first.nodes)
                    if got is None:
                        raise _OnePass  # one pass finds the first error, if that was one
                    piece, more = got
                    try:
                        parsing.merge(first, piece)
                    except parsing.Irregular:
                        raise _OnePass from None
                    unsettled.add(more)
            return fastload.finish(first, path, settings, Reporter(settings.strict_data), unsettled, plugins)
    except parsing.RefusedRecord:
        raise  # from the first piece (see read): the zone's first error
    except parsing.Irregular:
        raise _OnePass from None  # one pass words the error, or steps aside
    finally:
        for worker in workers:
            worker.reap()


def load(
    files: list[tuple[str, bytes]], settings: ZoneSettings, plugins: DynamicTargets | None = None
) -> Iterator[tuple[bytes, model.Zone]]:
    """(apex, zone) per file in order; the first zone in error raises its ``ZoneError`` (file:line).

    ``plugins`` check DYNA/DYNC targets (without them, a zone holding one is refused).
    """
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
            yield apex, _split(path, apex, settings, plugins)
            i += 1
            continue
        j = i
        while j < len(files) and not (parallel and sizes[j] >= SPLIT_BYTES):
            j += 1
        if parallel and j - i > 1 and sum(sizes[i:j]) >= BATCH_BYTES:
            yield from _batch(files[i:j], sizes[i:j], settings, plugins)
        else:
            for path, apex in files[i:j]:
                yield apex, fastload.load_zone(path, apex, settings, plugins=plugins)
        i = j
