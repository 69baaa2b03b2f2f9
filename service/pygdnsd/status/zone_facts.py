"""Per-zone facts for the status page and metrics: serial, record count, when loaded.

Counting a zone's records walks all of it (a million records: a few hundred
ms), so the census is taken once per loaded zone set, on the status
server's thread when first asked, not on the serving path or in a reload.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pygdnsd.zones.model import Zone, ZoneSet


@dataclass(frozen=True, slots=True)
class ZoneFacts:
    name: str  # presentation form, with the trailing dot
    serial: int
    records: int  # resource records, a DYNA/DYNC counting as one
    loaded_at: float  # wall clock of the load that brought this data


def count_records(zone: Zone) -> int:
    total = 0
    for node in zone.nodes.values():
        for rrset in node.values():
            total += len(rrset.rdatas) or 1
    return total


class ZoneCensus:
    """The facts of the zone set served now, counted once per load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, float] | None = None
        self._facts: tuple[ZoneFacts, ...] = ()

    def facts(self, zones: ZoneSet, loaded_at: float) -> tuple[ZoneFacts, ...]:
        # Keyed by the set's identity and its load time: a new load always has a new time,
        # so a new set at a recycled address is never mistaken for the old one.
        key = (id(zones), loaded_at)
        with self._lock:
            if key != self._key:
                self._facts = tuple(
                    ZoneFacts(zone.name_text, zone.serial, count_records(zone), loaded_at)
                    for zone in sorted(zones.zones.values(), key=lambda z: z.name_text)
                )
                self._key = key
            return self._facts
