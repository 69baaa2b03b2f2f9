"""A monitored state with its TTL: what resolver plugins read.

gdnsd tracks, for every monitored resource, whether it is UP or DOWN and the
least time (seconds) until the state could next change; DYNA/DYNC answers use
the minimum of the TTLs involved, clamped to the record's MAX/MIN. ``TTL_MAX``
is the "no limit" value (gdnsd prints it as ``MAX``, and 0 as ``MIN``).
"""

from __future__ import annotations

from dataclasses import dataclass

TTL_MAX = 2**28 - 1


@dataclass(frozen=True, slots=True)
class Sttl:
    """State plus TTL. ``forced`` marks a state set by admin_state."""

    down: bool
    ttl: int = TTL_MAX
    forced: bool = False

    def text(self) -> str:
        """gdnsd's log form: ``UP/30``, ``DOWN/MAX``, ``UP/MIN``."""
        if self.ttl >= TTL_MAX:
            ttl = "MAX"
        elif self.ttl == 0:
            ttl = "MIN"
        else:
            ttl = str(self.ttl)
        return f"{'DOWN' if self.down else 'UP'}/{ttl}"


UP = Sttl(down=False)
DOWN = Sttl(down=True)


def worst(states: list[Sttl] | tuple[Sttl, ...]) -> Sttl:
    """The net state of several service types on one address: DOWN if any is, least TTL."""
    if not states:
        return UP
    return Sttl(down=any(s.down for s in states), ttl=min(s.ttl for s in states))


def clamp_ttl(ttl: int, max_ttl: int, min_ttl: int) -> int:
    """The TTL served for a DYNA/DYNC answer: the computed TTL within the record's MAX/MIN."""
    return max(min_ttl, min(max_ttl, ttl))
