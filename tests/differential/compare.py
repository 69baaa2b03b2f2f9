"""Running the query set against two servers and collecting the differences."""

from __future__ import annotations

from collections.abc import Iterable

from differential.normalise import describe_difference, normalise
from differential.queries import Probe
from differential.wire import ask

# Loopback servers answer at once; a probe that gets nothing for this long is
# taken as deliberately dropped.
REPLY_TIMEOUT = 1.0


def differences(reference: tuple[str, int], ours: tuple[str, int], probes: Iterable[Probe]) -> list[str]:
    """One readable entry per probe whose normalised responses differ."""
    found = []
    for probe in probes:
        expected = normalise(ask(reference, probe.packet, probe.tcp, REPLY_TIMEOUT))
        actual = normalise(ask(ours, probe.packet, probe.tcp, REPLY_TIMEOUT))
        diff = describe_difference(f"{probe.label} ({'tcp' if probe.tcp else 'udp'})", expected, actual)
        if diff:
            found.append(diff)
    return found


def report(found: list[str], total: int, limit: int = 40) -> str:
    shown = "\n".join(found[:limit])
    more = f"\n... and {len(found) - limit} more" if len(found) > limit else ""
    return f"{len(found)} of {total} probes differ:\n{shown}{more}"
