"""Zone files read by several processes at once (``zones_rfc1035_threads``).

gdnsd reads zone files on threads; Python threads would share one
interpreter lock, so this forks worker processes instead. A worker gets a
run of small zone files, or a piece of one big file (``fastload.split``),
reads it with the fast path and sends the result back pickled; meanwhile
this process reads its own share. RRsets travel as (type, ttl, rdatas) and
are rebuilt with ``fastload.new_rrset``, which is what makes the transfer
cheaper than the reading.

Anything a worker cannot vouch for (``Irregular``, a strict-mode SOA
warning, a worker that died) comes back as ``None`` and the caller loads
that zone with the reference path, in file order, so the first error and
every warning read exactly as they would without workers. The SOA warnings
of zones a worker read are logged here, in file order, when its result is
taken.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import io
import logging
import os
import pickle
import signal
from collections.abc import Callable, Iterator
from typing import Any

from pygdnsd.errors import ZoneError
from pygdnsd.zones import fastload, model
from pygdnsd.zones.settings import ZoneSettings
from pygdnsd.zones.tree import Reporter

log = logging.getLogger("pygdnsd.zones")

# Below these sizes a fork costs more than it saves.
SPLIT_BYTES = 4 << 20
BATCH_BYTES = 1 << 20
# Workers also pickle what they send (dearer than unpickling it here): give them a little less.
OWN_SHARE = 0.52

Warning_ = tuple[str, str, int | None]


def _reduce_rrset(rrset: model.RRset) -> tuple[Callable[..., model.RRset], tuple[Any, ...]]:
    return fastload.new_rrset, (rrset.rtype, rrset.ttl, rrset.rdatas)


_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH[model.RRset] = _reduce_rrset


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
    """A forked child computing ``job()``; ``result()`` is its pickled answer, or ``None``."""

    def __init__(self, job: Callable[[], object]) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running the parent's cleanups
            code = 1
            try:
                os.close(read_fd)
                answer = job()
                # Pickle it all before writing: streaming into the pipe would stall on the
                # parent, which reads only once its own share is done.
                buffer = io.BytesIO()
                pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
                pickler.dispatch_table = _DISPATCH
                pickler.dump(answer)
                del answer
                with os.fdopen(write_fd, "wb") as out:
                    out.write(buffer.getbuffer())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid = pid
        self.read_fd = read_fd
        self.reaped = False

    def result(self) -> object:
        try:
            with os.fdopen(self.read_fd, "rb", buffering=1 << 20) as source, fastload.collector_paused():
                answer = pickle.load(source)
        except (EOFError, pickle.UnpicklingError, OSError):
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


def _read_group(group: list[tuple[str, bytes]], settings: ZoneSettings) -> list[tuple[model.Zone | None, list[Warning_]]]:
    out: list[tuple[model.Zone | None, list[Warning_]]] = []
    for path, apex in group:
        report = _Deferred(settings.strict_data)
        try:
            out.append((fastload.load_zone(path, apex, settings, report), report.messages))
        except (fastload.Irregular, ZoneError):
            out.append((None, []))
    return out


def _groups(files: list[tuple[str, bytes]], sizes: list[int], count: int) -> list[list[tuple[str, bytes]]]:
    """``files`` in ``count`` contiguous runs of about equal bytes (this process's, the first, a little larger)."""
    total = sum(sizes) or 1
    shares = [OWN_SHARE] + [(1 - OWN_SHARE) / (count - 1)] * (count - 1)
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
            for (path, apex), (zone, messages) in zip(group, results, strict=True):
                for message, where, line in messages:
                    replay.warn(message, where, line, strictable=False)
                yield path, apex, zone
    finally:
        for worker in workers:
            worker.reap()


def _split(path: str, apex: bytes, settings: ZoneSettings) -> model.Zone | None:
    """One big file read in pieces, one per process, merged in file order."""
    try:
        text = fastload.read_text(path)
        pieces = fastload.split(text, apex, settings, settings.threads)
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

    workers = [_Worker(functools.partial(read, *piece)) for piece in pieces[1:]]
    try:
        first = read(*pieces[0])
        source.clear()
        answers = [worker.result() for worker in workers]
        if first is None:
            return None
        with fastload.collector_paused():
            for answer in answers:
                if not isinstance(answer, fastload.ZonePiece):
                    return None
                fastload.merge(first, answer)
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
