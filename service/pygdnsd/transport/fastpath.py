"""Which path answers UDP: the compiled fast path or pure Python.

``_fastpath`` (``_fastpath.c``, built by setup.py where a C compiler is
available) only moves bytes: batched receive and send, and answers the
engine has already prepared, assembled in C. What an answer holds is still
decided in Python (engine/, zones/, plugins/). The pure-Python path is the
reference and the fallback: it serves when the module was not built, or
when ``PYGDNSD_PURE=1`` is in the environment. Both give the same bytes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from types import ModuleType

PURE_VARIABLE = "PYGDNSD_PURE"


@dataclass(frozen=True, slots=True)
class UdpPath:
    """The chosen path: the compiled module (``None``: pure Python) and why, for the log."""

    module: ModuleType | None
    description: str


def choose(environ: dict[str, str] | os._Environ[str] = os.environ) -> UdpPath:
    """The compiled module unless ``PYGDNSD_PURE`` is set (to anything but ``0``) or it is missing."""
    if environ.get(PURE_VARIABLE, "") not in ("", "0"):
        return UdpPath(None, f"pure-Python path ({PURE_VARIABLE}={environ[PURE_VARIABLE]})")
    try:
        from pygdnsd.transport import _fastpath
    except ImportError as missing:
        return UdpPath(None, f"pure-Python path (the compiled fast path is not built: {missing})")
    return UdpPath(_fastpath, f"compiled fast path ({_fastpath.__file__})")


@functools.cache
def chosen() -> UdpPath:
    """The path this process serves with, chosen once (``choose``)."""
    return choose()
