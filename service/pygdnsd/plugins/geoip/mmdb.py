"""MaxMind DB files, read through the maintained ``maxminddb`` package.

A map needs the whole search tree (every network and its record), not one
address at a time. maxminddb 2.1 (Debian 12's python3-maxminddb) has no
public way to walk the tree (``Reader.__iter__`` came in 2.3), so this one
module uses the pure-Python reader's node and record accessors
(``_read_node``, ``_resolve_data_pointer``), checked when a file is opened;
everything else (metadata, the data section's decoder) is maxminddb's own.

The file is read into memory (MODE_MEMORY), never mapped: an operator
truncating a database in place would otherwise crash the daemon with
SIGBUS while the old map is still being read. Records are decoded by the
package's C extension where it is there (Debian's and PyPI's builds have
it), looked up by an address of their network in a private copy of those
bytes (a memfd: nobody else can truncate it): the pure-Python decoder
took most of a City database's load time (see ``record``).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

Record = Any  # a decoded MaxMind record: dicts, lists, strings and numbers

V4_PATH: Final = -2  # above ::/96 in an IPv4-only database: the way to its root


class DatabaseError(Exception):
    """A database that cannot be used; the message names the file."""


@dataclass(frozen=True)
class DatabaseInfo:
    path: Path
    database_type: str
    ip_version: int
    node_count: int
    build_epoch: int


class Database:
    """One open database: its metadata, its tree's nodes and its records."""

    def __init__(self, path: Path) -> None:
        # Imported here: a server with no geoip map needs no MaxMind reader installed.
        try:
            import maxminddb
            import maxminddb.reader
        except ImportError:
            raise DatabaseError(
                f"cannot read '{path}': the maxminddb module (python3-maxminddb) is not installed"
            ) from None
        try:
            reader = maxminddb.reader.Reader(str(path), maxminddb.MODE_MEMORY)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise DatabaseError(f"cannot open GeoIP2 database '{path}': {exc}") from None
        if not callable(getattr(reader, "_read_node", None)) or not callable(
            getattr(reader, "_resolve_data_pointer", None)
        ):
            raise DatabaseError(
                f"'{path}': this maxminddb ({maxminddb.__version__}) cannot walk a database"
            )
        meta = reader.metadata()
        if meta.ip_version not in (4, 6):
            raise DatabaseError(f"GeoIP2 database '{path}' has unsupported ip_version {meta.ip_version}")
        self.info = DatabaseInfo(
            path, str(meta.database_type), int(meta.ip_version), int(meta.node_count),
            int(meta.build_epoch),
        )
        self._reader = reader
        self._read_node = cast(Callable[[int, int], int], reader._read_node)
        self._record = cast(Callable[[int], Record], reader._resolve_data_pointer)
        self._fast = _c_reader(cast(bytes, reader._buffer))
        self._record_size = int(meta.record_size)
        self._nodes: tuple[array[int], array[int]] | None = None  # ``node_arrays``, once made

    @property
    def root(self) -> int:
        return V4_PATH if self.info.ip_version == 4 else 0

    def children(self, node: int, depth: int) -> tuple[int, int]:
        """The two children of internal ``node`` (or of the IPv4 root's path at ``depth``)."""
        if node == V4_PATH:
            # An IPv4 database fills ::/96 only: the all-zero path leads to its root.
            return (V4_PATH if depth + 1 < 96 else 0), self.info.node_count
        try:
            return self._read_node(node, 0), self._read_node(node, 1)
        except Exception as exc:  # a corrupt tree surfaces as any error of the reader
            raise DatabaseError(f"GeoIP2 database '{self.info.path}': bad search tree: {exc}") from None

    def node_arrays(self) -> tuple[array[int], array[int]]:
        """Every node's left and right child, for a walk over the whole tree.

        A walk asks for millions of children (the bench's City database has
        6,655,913 nodes), and the reader's ``_read_node`` costs about 1.5 us
        each: half of a City map's 21 s load. The search tree is an array of
        fixed-size nodes (the MaxMind DB spec, "Search Tree Section": two
        big-endian records of 24, 28 or 32 bits), so its records are copied
        into two 32-bit arrays with slice assignments, at C speed; the
        metadata and the records' data stay the reader's to decode. Checked
        against ``_read_node`` on nodes across the tree: a reader that laid
        its buffer out otherwise gets a DatabaseError, not wrong networks.
        """
        if self._nodes is not None:
            return self._nodes
        count = self.info.node_count
        size = self._record_size
        if size not in (24, 28, 32):
            raise DatabaseError(f"GeoIP2 database '{self.info.path}': unknown record size {size}")
        tree = cast(bytes, self._reader._buffer)[: count * size // 4]
        if len(tree) != count * size // 4:
            raise DatabaseError(f"GeoIP2 database '{self.info.path}': search tree runs past the file")
        left, right = decode_tree(tree, size)
        for node in {0, count // 3, count // 2, count - 1, *range(0, count, max(count // 997, 1))}:
            if 0 <= node < count and (left[node], right[node]) != (
                self._read_node(node, 0),
                self._read_node(node, 1),
            ):
                raise DatabaseError(f"GeoIP2 database '{self.info.path}': search tree not read as the reader reads it")
        self._nodes = (left, right)
        return self._nodes

    def is_internal(self, ref: int) -> bool:
        return ref == V4_PATH or 0 <= ref < self.info.node_count

    def is_empty(self, ref: int) -> bool:
        return ref == self.info.node_count

    def record(self, pointer: int, address: int) -> Record:
        """The record ``pointer`` (a tree leaf) refers to; ``address`` lies in a network it covers.

        Through the C extension, looked up by ``address``: about 20 times
        faster than the pure-Python decoder, which decodes every pointer
        inside a record again (City records share their country's and
        continent's names that way).
        """
        try:
            if self._fast is not None:
                found = self._fast.get(self._address(address))
                if found is not None:
                    return found
            return self._record(pointer)
        except Exception as exc:
            raise DatabaseError(f"GeoIP2 database '{self.info.path}': bad record: {exc}") from None

    def _address(self, address: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """A 128-bit table address as the database is searched (IPv4-only: ``::/96`` as IPv4)."""
        if self.info.ip_version == 4:
            return ipaddress.IPv4Address(address & 0xFFFFFFFF)
        return ipaddress.IPv6Address(address)

    def close(self) -> None:
        self._nodes = None
        self._reader.close()
        if self._fast is not None:
            self._fast.close()


# A 28-bit record's top nibble: the left one's is the middle byte's high nibble.
_HIGH_NIBBLE: Final = bytes(b >> 4 for b in range(256))
_LOW_NIBBLE: Final = bytes(b & 0x0F for b in range(256))


def decode_tree(tree: bytes, size: int) -> tuple[array[int], array[int]]:
    """A search tree's nodes (``size``-bit records, 24, 28 or 32) as left and right child arrays.

    Each record is copied into a 32-bit big-endian slot of a bytearray with
    one slice assignment per byte position, then read as native integers.
    """
    step = size // 4  # bytes per node
    count = len(tree) // step
    halves = []
    for side in (0, 1):
        out = bytearray(4 * count)
        if size == 32:
            for i in range(4):
                out[i::4] = tree[4 * side + i :: step]
        else:
            # 28 bits: left is bytes 0-2 under the middle byte's high nibble,
            # right is bytes 4-6 under its low nibble.
            first = 3 * side + (1 if size == 28 and side else 0)
            for i in range(3):
                out[i + 1 :: 4] = tree[first + i :: step]
            if size == 28:
                out[0::4] = tree[3::step].translate(_HIGH_NIBBLE if side == 0 else _LOW_NIBBLE)
        values = array("I")
        values.frombytes(out)
        if sys.byteorder == "little":
            values.byteswap()
        halves.append(values)
    return halves[0], halves[1]


def _c_reader(data: bytes) -> Any:
    """maxminddb's C reader over a private copy of ``data``, or None where there is none."""
    try:
        import maxminddb
        import maxminddb.extension
    except ImportError:
        return None
    try:
        fd = os.memfd_create("pygdnsd-geoip", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        with os.fdopen(os.dup(fd), "wb") as copy:
            copy.write(data)
        return maxminddb.extension.Reader(f"/proc/self/fd/{fd}", maxminddb.MODE_MMAP_EXT)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError):
        return None
    finally:
        os.close(fd)


