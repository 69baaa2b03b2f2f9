"""Keep the cyclic garbage collector off the loaded zone data.

Python's collector periodically walks every container object it tracks; a
full pass over a loaded zone set (a dict per name, tuples of rdata) holds
the interpreter lock for milliseconds per 100,000 names, and every query
arriving meanwhile waits: that was most of pygdnsd's p99 latency. Zone data
is built once and never changed, and it holds no reference cycles, so it
never needs the cyclic collector: ``settle`` moves everything alive into
the permanent generation (``gc.freeze``), which the collector skips.

Freezing does not leak replaced data: an acyclic object is freed by its
reference count, frozen or not, so the old zone set goes away at a reload
as soon as the last query using it finishes.
"""

from __future__ import annotations

import gc


def settle(collect: bool) -> None:
    """Exempt every object alive now from later collections.

    ``collect`` first frees the cyclic garbage that loading left: at startup,
    before serving. A reload skips it, since a full pass then would stall the
    serving threads for exactly the time this module exists to save.
    """
    if collect:
        gc.collect()
    gc.freeze()
