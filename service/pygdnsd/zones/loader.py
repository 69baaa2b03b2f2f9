"""The zones directory -> ``ZoneSet``: one zone per file, all or nothing.

Directory rules (``man gdnsd``, checked against gdnsd 3.8.1): every regular
file is a zone named after the file (symlinks to regular files count, which
is how zones are aliased); names starting with ``.`` and subdirectories are
skipped (subdirectories hold ``$INCLUDE`` files). ``@`` in a file name
stands for ``/`` (RFC 2317 zones), ``ROOT_ZONE`` is the root zone, trailing
dots are ignored and zone-file escapes are honoured. Two files naming the
same zone (case-insensitively) or a zone inside another are errors.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from pygdnsd.errors import ZoneError
from pygdnsd.log import warnings_held
from pygdnsd.zones import model, names, parallel
from pygdnsd.zones.messages import DynamicTargets
from pygdnsd.zones.settings import ZoneSettings

__all__ = ["ZoneSettings", "load_zones", "zone_files", "zone_name_from_filename"]

ROOT_ZONE_FILE = "ROOT_ZONE"
log = logging.getLogger("pygdnsd.zones")


def zone_name_from_filename(filename: str) -> bytes:
    """The apex (lowercase wire) a zone file name stands for."""
    if filename == ROOT_ZONE_FILE:
        return names.ROOT
    text = filename.replace("@", "/").rstrip(".")
    if not text or text.endswith("\\"):
        raise ValueError(f"file name {filename!r} is not a zone name")
    return names.from_text(text + ".")


def zone_files(zones_dir: Path) -> list[Path]:
    """The zone files in ``zones_dir``, sorted by name."""
    try:
        entries = sorted(os.listdir(zones_dir))
    except FileNotFoundError:
        # gdnsd 3.8.1 serves no zones then, and checkconf succeeds.
        log.info("zones directory %s does not exist: no zones loaded", zones_dir)
        return []
    except OSError as exc:
        raise ZoneError(f"cannot read zones directory: {exc.strerror}", str(zones_dir)) from None
    out = []
    for entry in entries:
        if entry.startswith("."):
            continue
        path = zones_dir / entry
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # a dangling symlink is not a zone file
        if stat.S_ISREG(mode):
            out.append(path)
    return out


def load_zones(
    zones_dir: Path, settings: ZoneSettings, dynamic: DynamicTargets | None = None
) -> model.ZoneSet:
    """Every zone in ``zones_dir``; the first problem raises ``ZoneError`` (file:line).

    ``dynamic`` (the resolver plugins) checks DYNA/DYNC targets; without it a
    zone holding one is refused.
    """
    files: list[tuple[str, bytes]] = []
    naming_error: ZoneError | None = None
    sources: dict[bytes, str] = {}
    # Every proper ancestor of a loaded apex -> the first apex below it.
    below: dict[bytes, bytes] = {}
    for path in zone_files(zones_dir):
        try:
            apex = zone_name_from_filename(path.name)
        except (ValueError, names.NameError_) as exc:
            naming_error = ZoneError(f"bad zone file name: {exc}", str(path))
            break
        if apex in sources:
            naming_error = ZoneError(
                f"zone '{names.to_text(apex)}' is a duplicate of an existing zone (from {sources[apex]})",
                str(path),
            )
            break
        outer = next((a for a in _ancestors(apex) if a in sources), None)
        inner = below.get(apex)
        if outer is not None or inner is not None:
            inner, outer = (apex, outer) if outer is not None else (inner, apex)
            assert inner is not None and outer is not None
            naming_error = ZoneError(
                f"zone '{names.to_text(inner)}' is a sub-zone of zone '{names.to_text(outer)}' "
                "(a parent and child zone cannot both be served)",
                str(path),
            )
            break
        sources[apex] = str(path)
        for ancestor in _ancestors(apex):
            below.setdefault(ancestor, apex)
        files.append((str(path), apex))
    zones: dict[bytes, model.Zone] = {}
    with _frozen_once_built(), warnings_held():
        # Zone by zone in file order, so the first error and the warnings come as without workers.
        for apex, zone in parallel.load(files, settings, dynamic):
            zones[apex] = zone
        if naming_error is not None:
            raise naming_error
        return model.ZoneSet(zones)


@contextlib.contextmanager
def _frozen_once_built() -> Iterator[None]:
    """No cyclic GC while loading, and none over the loaded zones afterwards.

    The collector would walk the growing zone set again and again while it
    is built, then once more with every full collection while it is served
    (seconds for a million records). Zone data is acyclic and never
    mutated, so on success everything alive is moved to the permanent
    generation (``gc.freeze``), as ``daemon.gc_freeze.settle`` does after a
    reload; replaced zone sets are still freed by reference counting.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if was:
            gc.enable()


def _ancestors(name: bytes) -> list[bytes]:
    """The proper ancestors of ``name``, the root included."""
    out = []
    while name != names.ROOT:
        name = names.parent(name)
        out.append(name)
    return out
