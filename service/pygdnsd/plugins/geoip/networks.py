"""A map's table: the 128-bit address space cut into the largest networks of one answer.

gdnsd merges a map's networks into the largest supernets whose every
address gets the same datacenter list, and a lookup's client-subnet scope
is the length of the network found. Whatever order the merging happens in,
that is one table: the network around an address is the shortest prefix
whose whole range maps to one list. ``build_table`` computes it in one walk
over the database's search tree (``Base``) with the nets entries and the
undefined IPv4-like spaces laid over it; the undefined spaces merge with
nothing, which is what makes gdnsd answer ``::1`` with scope 81 when a map
has no data at all (observed with ``gdnsd_geoip_test``).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

UNDEFINED: Final = -1  # the value of an undefined IPv4-like space
MIXED: Final = -2  # a region holding more than one value (its parts are in the table)

Ref = object  # a Base's handle on one node of its tree


class Base(Protocol):
    """What lies under the nets entries: the database, or only the default list."""

    @property
    def root(self) -> Ref: ...

    def split(self, ref: Ref, depth: int) -> tuple[Ref, Ref] | None:
        """The two halves of node ``ref`` at ``depth``, or None when ``ref`` is one value."""
        ...

    def value(self, ref: Ref, addr: int) -> int:
        """The datacenter list (its number in the map) of a node that is one value.

        ``addr``: an address of the network the node covers (records decode
        faster looked up by address, see ``mmdb.Database.record``).
        """
        ...

    def under(self, ref: Ref, depth: int, addr: int, leaves: list[Leaf]) -> int:
        """The region ``addr/depth`` of the base alone: its one value, or MIXED after
        appending its largest one-value networks to ``leaves`` (``walk``)."""
        ...


@dataclass(frozen=True)
class Overlay:
    """A nets entry (or an undefined space) laid over the base: its network wins."""

    start: int
    length: int
    value: int


# A lookup bisects only the starts of one 16-bit bucket of the address
# space (IPv4 in ::/96 bucketed by its own top 16 bits): a bisection of all
# 196,471 starts of GeoLite2 Country took 18 steps over a 1.5 MB list, most
# of them cache misses for random client addresses.
BUCKETS: Final = 1 << 16


def bucket_firsts(starts: list[int], shift: int) -> array[int]:
    """For each bucket ``b`` (and one past the last), the index of the first start >= ``b << shift``."""
    return array("I", (bisect.bisect_left(starts, b << shift) for b in range(BUCKETS + 1)))


@dataclass(frozen=True)
class NetworkTable:
    """Sorted network starts with each network's length and datacenter list.

    ``v4_firsts``/``v6_firsts``: ``bucket_firsts`` of the IPv4 space (keys
    below 2**32, by their top 16 bits) and of the whole space (by the top
    16 bits of 128).
    """

    starts: list[int]
    lengths: bytes
    values: array[int]
    v4_firsts: array[int]
    v6_firsts: array[int]

    def find(self, key: int) -> tuple[int, int]:
        """(datacenter list, network length) of the network holding ``key``."""
        if key >> 32:
            firsts, bucket = self.v6_firsts, key >> 112
        else:
            firsts, bucket = self.v4_firsts, key >> 16
        # The network holding ``key`` may begin before its bucket: index first - 1.
        i = bisect.bisect_right(self.starts, key, firsts[bucket], firsts[bucket + 1]) - 1
        return self.values[i], self.lengths[i]

    def __len__(self) -> int:
        return len(self.starts)


Leaf = tuple[int, int, int]  # network start, length, value


def combine(left: int, right: int, depth: int, addr: int, leaves: list[Leaf]) -> int:
    """The value of region ``addr/depth`` from its halves' (MIXED: see ``leaves``)."""
    if left == right and left != MIXED and left != UNDEFINED:
        return left
    if left != MIXED:
        leaves.append((addr, depth + 1, left))
    if right != MIXED:
        leaves.append((addr | 1 << (127 - depth), depth + 1, right))
    return MIXED


def walk(base: Base, ref: Ref, depth: int, addr: int, leaves: list[Leaf]) -> int:
    """``Base.under`` through ``split`` and ``value``: any base's way."""
    halves = base.split(ref, depth)
    if halves is None:
        return base.value(ref, addr)
    left = base.under(halves[0], depth + 1, addr, leaves)
    right = base.under(halves[1], depth + 1, addr | 1 << (127 - depth), leaves)
    return combine(left, right, depth, addr, leaves)


class _Builder:
    def __init__(self, base: Base) -> None:
        self.base = base
        self.leaves: list[Leaf] = []

    def under(self, ref: Ref, depth: int, addr: int) -> int:
        """The base alone over the region ``addr/depth``."""
        return self.base.under(ref, depth, addr, self.leaves)

    def region(
        self, ref: Ref, depth: int, addr: int, entries: Sequence[Overlay], cover: int | None
    ) -> int:
        """The region ``addr/depth`` with the overlay ``entries`` inside it, ``cover`` around it."""
        if entries and entries[0].start == addr and entries[0].length == depth:
            cover = entries[0].value
            entries = entries[1:]
        if not entries:
            return self.under(ref, depth, addr) if cover is None else cover
        bit = 1 << (127 - depth)
        middle = bisect.bisect_left(entries, addr | bit, key=_start)
        halves = self.base.split(ref, depth) or (ref, ref)
        left = self.region(halves[0], depth + 1, addr, entries[:middle], cover)
        right = self.region(halves[1], depth + 1, addr | bit, entries[middle:], cover)
        return combine(left, right, depth, addr, self.leaves)


def _start(entry: Overlay) -> int:
    return entry.start


def build_table(base: Base, overlay: Sequence[Overlay]) -> NetworkTable:
    """The merged table of ``base`` under ``overlay`` (sorted by start, then length; no duplicates)."""
    builder = _Builder(base)
    whole = builder.region(base.root, 0, 0, overlay, None)
    if whole != MIXED:
        builder.leaves.append((0, 0, whole))
    builder.leaves.sort()
    starts = [leaf[0] for leaf in builder.leaves]
    return NetworkTable(
        starts,
        bytes(leaf[1] for leaf in builder.leaves),
        array("i", (leaf[2] for leaf in builder.leaves)),
        bucket_firsts(starts, 16),
        bucket_firsts(starts, 112),
    )
