"""The loaded zone data the query engine answers from.

This is the contract between the zone loader (parsing.py, rules.py, fastload.py) and the
engine: the loader produces a ``ZoneSet`` whose data is final (names
lowercase, TTLs clamped, SOA TTL rules applied, rdata in uncompressed wire
form), and the engine only reads it. A ``ZoneSet`` is never mutated after it
is built: reload-zones builds a new one and swaps the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pygdnsd.zones import names

# Record types, as used across the package.
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
HINFO = 13
MX = 15
TXT = 16
AAAA = 28
SRV = 33
NAPTR = 35
DNAME = 39
OPT = 41
DS = 43
CAA = 257
IXFR = 251
AXFR = 252
MAILB = 253
MAILA = 254
ANY = 255
TKEY = 249
TSIG = 250

# Dynamic records live in the tree under pseudo-types outside the 16-bit
# space, so they can never collide with a real qtype (see DynamicRRset).
DYNA = 0x1_0001
DYNC = 0x1_0002

CLASS_IN = 1
CLASS_CH = 3
CLASS_ANY = 255


@dataclass(frozen=True, slots=True)
class RRset:
    """All records of one type at one name.

    ``rdatas`` hold uncompressed wire rdata with every embedded name
    lowercase; the engine compresses names in NS, CNAME, PTR, MX, SOA (and the
    others gdnsd compresses) while writing a response. ``ttl`` is the TTL
    served, already clamped by the loader.
    """

    rtype: int
    ttl: int
    rdatas: tuple[bytes, ...]

    # An RRset is also the node of a name that holds only it (see ``Zone.nodes``):
    # a read-only mapping of its own type to itself. Most names hold one RRset,
    # and a dict per name would be half the memory of a big zone.

    def get(self, rtype: int, default: RRset | None = None) -> RRset | None:
        return self if rtype == self.rtype else default

    def __getitem__(self, rtype: int) -> RRset:
        if rtype != self.rtype:
            raise KeyError(rtype)
        return self

    def __contains__(self, rtype: object) -> bool:
        return rtype == self.rtype

    def __iter__(self) -> Iterator[int]:
        return iter((self.rtype,))

    def __len__(self) -> int:
        return 1

    def keys(self) -> tuple[int]:
        return (self.rtype,)

    def values(self) -> tuple[RRset]:
        return (self,)

    def items(self) -> tuple[tuple[int, RRset]]:
        return ((self.rtype, self),)


# The RRsets at one name, by type: the RRset itself when it is the only one.
Node = dict[int, RRset] | RRset


def node_of(rrsets: dict[int, RRset]) -> Node:
    """The node for a name holding ``rrsets`` (an empty dict for an empty non-terminal)."""
    if len(rrsets) == 1:
        for rrset in rrsets.values():
            return rrset
    return rrsets


@dataclass(frozen=True, slots=True)
class DynamicRRset(RRset):
    """A DYNA or DYNC record, answered by a resolver plugin at query time.

    ``rtype`` is ``DYNA`` or ``DYNC``, ``rdatas`` is empty, ``ttl`` is the
    record's MAX TTL and ``min_ttl`` its MIN (``MAX/MIN`` in the zone file).
    """

    plugin: str = ""
    resource: str = ""
    min_ttl: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as read from a zone file, before the whole-zone checks and clamping.

    Only some records are kept as such while loading (the SOA, DYNA/DYNC,
    a record the parser reads slowly). ``ttl`` is the TTL written (or the
    ``$TTL`` default). For DYNA/DYNC ``rdata`` is the ``plugin!resource``
    text (utf-8), ``ttl`` the MAX of the ``MAX/MIN`` syntax and ``dyn_min``
    its MIN (0 when not written: gdnsd then takes half of MAX, and so it
    does for a written 0).
    """

    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes
    path: str
    line: int
    dyn_min: int = 0


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone: every name in it, and where its delegations are.

    ``nodes`` maps each name of the zone (lowercase wire) to its RRsets by
    type (a ``Node``: a dict, or the RRset itself for a name holding only
    one, see ``node_of``; read it with ``get`` and ``[]``). It holds every
    name that exists in the DNS sense, empty non-terminals included (with an
    empty dict), so the closest encloser of a
    missing name is its longest suffix found in ``nodes``. Names at or below a
    delegation point (``cuts``) hold only glue; the engine answers every name
    at or below a cut with a referral.
    """

    apex: bytes
    serial: int
    soa: RRset
    nodes: dict[bytes, Node]
    cuts: frozenset[bytes]
    source: str = ""
    # A cache, not data: for the zone's NS targets asked about so far (by
    # ``engine.lookup``), whether they lie at or below a delegation. gdnsd
    # serves such a target's addresses as glue wherever an NS RRset names it
    # (the root zone's servers under ``net``). Found on first use: a pass over
    # every NS RRset at load cost load-big 2-4% of its load time (measured)
    # for a set that is empty there; after that, one dict lookup. Bytes to
    # bools only, so the cyclic collector never tracks it.
    below_cut: dict[bytes, bool] = field(init=False, default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.apex not in self.nodes:
            raise ValueError("zone apex missing from its own nodes")

    @property
    def name_text(self) -> str:
        return names.to_text(self.apex)


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """Every loaded zone, by apex."""

    zones: dict[bytes, Zone] = field(default_factory=dict)

    def find_zone(self, qname: bytes) -> Zone | None:
        """The zone holding ``qname`` (lowercase wire): its longest suffix that is an apex."""
        zones = self.zones
        pos = 0
        while True:
            zone = zones.get(qname[pos:])
            if zone is not None:
                return zone
            length = qname[pos]
            if length == 0:
                return None
            pos += length + 1
