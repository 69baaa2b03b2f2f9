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

    @property
    def read_node(self) -> Callable[[int, int], int]:
        """The reader's own ``(node, 0 or 1) -> child``, for a walk over the whole tree.

        Unchecked: a walk calls it millions of times (a City database has
        millions of nodes), and catches the reader's errors once around the
        whole walk (``DatabaseError``, as ``children`` raises).
        """
        return self._read_node

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
        self._reader.close()
        if self._fast is not None:
            self._fast.close()


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


