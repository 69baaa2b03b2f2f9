"""Acceptance of issue 15 without systemd: gdnsd -> pygdnsd -> gdnsd -> pygdnsd under load, nothing lost.

5,000 UDP queries/s and 100 TCP connections/s on loopback (tests/loadgen.py,
as the replace tests run it) while each new side's ``-R start`` takes over
from the other kind. Every takeover must complete (the old process exits 0,
the new one answers), no UDP query may go unanswered and no TCP connection
fail, and the counters after each step must include every earlier
generation's. The takeover times are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

from daemon_support import wait_for
from migrate_support import Lineup, serves_everywhere
from test_replace import BackgroundLoad, load_on

# Long enough for three takeovers (pygdnsd's start is ~2-4 s of CPU on a shared
# 2-core machine), short enough for a CI job: the whole test takes about 30 s.
LOAD_SECONDS = 24.0


def answered(stats: dict[str, dict[str, int]]) -> tuple[int, int]:
    return stats["udp"]["reqs"], stats["tcp"]["reqs"]


def grows(lineup: Lineup, udp: int = 250, tcp: int = 5) -> None:
    """Wait until the serving daemon has answered that much more of the load (polling its stats)."""
    base = answered(lineup.stats())

    def grown() -> bool:
        now = answered(lineup.stats())
        return now[0] - base[0] >= udp and now[1] - base[1] >= tcp

    assert wait_for(grown, 20.0), f"the daemon did not answer the load: {lineup.stats()}"


def test_gdnsd_and_pygdnsd_take_over_from_each_other_under_load_losing_nothing(lineup: Lineup) -> None:
    current = lineup.start("gdnsd")
    load: BackgroundLoad = load_on(lineup.port, duration=LOAD_SECONDS)
    grows(lineup)
    steps: list[str] = []
    for kind in ("pygdnsd", "gdnsd", "pygdnsd"):
        before = lineup.stats()
        new, took = lineup.take_over(current, kind)
        after = lineup.stats()
        # The new daemon's counters start from the old one's final ones (and its uptime from its start).
        assert answered(after) >= answered(before), (before, after)
        assert after["uptime"] >= before["uptime"]
        steps.append(f"{current.kind} -> {kind}: {took * 1000:.0f} ms (old PID {current.pid}, new PID {new.pid})")
        current = new
        grows(lineup)  # the new daemon answers the load itself
    assert load.since_start() < LOAD_SECONDS, "the takeovers outlasted the load: " + "; ".join(steps)
    outcome = load.finish()
    print("\n" + "\n".join(steps) + "\n" + load.report())
    assert outcome.clean, load.report()
    assert outcome.udp_sent >= 0.9 * 5000 * LOAD_SECONDS and outcome.tcp_sent >= 0.9 * 100 * LOAD_SECONDS
    final = lineup.stats()
    # The last generation counts every generation's answers, the load's among them.
    assert final["udp"]["reqs"] >= outcome.udp_answered, (final, load.report())
    assert final["tcp"]["reqs"] >= outcome.tcp_answered, (final, load.report())
    serves_everywhere(lineup)
    assert current.kind == "pygdnsd" and not current.exited()
