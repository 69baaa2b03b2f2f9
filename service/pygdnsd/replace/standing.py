"""What serves after a replace failed, as found (not assumed) by the ``gdnsd replace`` helper.

A new daemon that dies before its verdict usually leaves the old daemon
serving (it resumes once the takeover connection closes). But one killed
just after the hand-off leaves nothing: the old daemon has handed over and
exited, and the pidfile names the dead new daemon. The helper says which,
after asking: the control socket, the pidfile's lock, and the old PID.
"""

from __future__ import annotations

import time
from pathlib import Path

from pygdnsd.daemon.initscript_verbs import Running, Where, find_running, process_gone
from pygdnsd.daemon.pidfile import PidfileState, probe

# Asked only when no live daemon holds the pidfile: then a control socket
# that is there answers at once, and one that is not refuses at once.
CONTROL_TIMEOUT = 1.0
SETTLE_TIMEOUT = 5.0
SETTLE_POLL = 0.1


def what_serves(where: Where, old_pid: int | None, cfgdir: Path, settle: float = SETTLE_TIMEOUT) -> str:
    """One clause for the helper's failure line: who serves now, or that nothing does and what to run.

    The pidfile's lock first: it is instant, and a hung (or stopped) old daemon
    still holds it while its control socket would keep us waiting, past ``-t``.
    An old daemon that lives but neither holds a pidfile nor answers yet may
    be resuming (gdnsd 3.8.1 keeps no pidfile, and accepts again only once
    the failed new daemon is gone): it gets ``settle`` seconds to answer.
    """
    deadline = time.monotonic() + settle
    for _ in range(int(settle / SETTLE_POLL) + 1):
        held = probe(where.pidfile)
        if held.state is PidfileState.RUNNING:
            running: Running | None = Running(held.pid, False)
        else:
            running = find_running(where, CONTROL_TIMEOUT)
        old_runs = old_pid is not None and not process_gone(old_pid)
        if running is not None or not old_runs or time.monotonic() >= deadline:
            break
        time.sleep(SETTLE_POLL)
    if running is not None and running.pid == old_pid:
        return f"the old daemon (PID {old_pid}) serves on"
    if running is not None:
        who = f"the daemon at PID {running.pid}" if running.pid is not None else "a daemon"
        also = f"; the old daemon (PID {old_pid}) still runs too" if old_runs else ""
        return f"{who} serves{also}"
    said = ["nothing serves now (no daemon answers on the control socket or holds the pidfile)"]
    if old_pid is not None:
        said.append(
            f"the old daemon (PID {old_pid}) still runs, but holds neither"
            if old_runs
            else f"the old daemon (PID {old_pid}) has exited"
        )
    if held.state is PidfileState.STALE:
        said.append(f"the pidfile {where.pidfile} names PID {held.pid}, which has exited")
    return "; ".join(said) + f" (start one with: gdnsd -c {cfgdir} daemonize)"
