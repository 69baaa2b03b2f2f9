"""What the reference zone path (zonefile + ``tree.build_zone``, removed) made of each test zone, replayed.

The fast path's tests compared it with a second loader, the reference path,
itself checked against gdnsd 3.8.1. That loader is gone (one set of rules
remains, ``zones/rules.py``); its results for every zone those tests load
were recorded, before it went, in ``data/zones/reference_results.json.gz``:
the zone built (its ``repr``), the warnings it wrote and the error it
raised. ``reference`` replays them: it writes the same warnings, raises
the same error or returns the same zone, so each test still asserts the
same equality. Paths are stored relative to the zone file's directory
(``{dir}``); a zone is found by the content of that directory, its file
name, apex and settings.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from functools import cache
from pathlib import Path

import pytest

from pygdnsd.errors import ZoneError
from pygdnsd.zones import model
from pygdnsd.zones.messages import DynamicTargets
from pygdnsd.zones.settings import ZoneSettings

STORE = Path(__file__).resolve().parent / "data" / "zones" / "reference_results.json.gz"
_log = logging.getLogger("pygdnsd.zones")


def key(path: Path, apex: bytes, settings: ZoneSettings, plugins: bool) -> str:
    """The recorded result's key: the zone file's directory (every file in it, by content), file name, apex, settings."""
    root = path.parent
    digest = hashlib.sha256()
    digest.update(repr((path.name, apex, settings, plugins)).encode())
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def _store() -> dict[str, dict[str, object]]:
    loaded: dict[str, dict[str, object]] = json.loads(gzip.decompress(STORE.read_bytes()))
    return loaded


def reference(path: Path, apex: bytes, settings: ZoneSettings, plugins: DynamicTargets | None = None) -> model.Zone:
    """The reference path's zone for ``path``, its warnings written again; its error raised again.

    ``plugins``: whether the zone was loaded with resolver plugins (the result is recorded for these).
    """
    entry = _store().get(key(path, apex, settings, plugins is not None))
    if entry is None:
        pytest.fail(f"no recorded reference result for {path} (a test zone changed?)")
    root = str(path.parent)
    for message in entry["log"]:  # type: ignore[attr-defined]
        _log.warning("%s", message.replace("{dir}", root))
    error = entry.get("error")
    if error is not None:
        problem, where, line = error  # type: ignore[misc]
        raise ZoneError(problem.replace("{dir}", root), None if where is None else where.replace("{dir}", root), line)
    names = {"Zone": model.Zone, "RRset": model.RRset, "DynamicRRset": model.DynamicRRset, "frozenset": frozenset}
    zone: model.Zone = eval(str(entry["zone"]).replace("{dir}", root), names)
    return zone
