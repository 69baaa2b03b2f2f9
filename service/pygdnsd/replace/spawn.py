"""``gdnsdctl replace``: the old daemon starts its replacement, as gdnsd does.

gdnsd 3.8.1 runs ``<its own binary> -c CFGDIR -R[D][l] start`` (observed
with strace), so whatever is installed at its path now takes over: a
package upgrade is picked up, and so is a package *switch*. We do the same:
the replacement is the ``gdnsd`` we were started as (``Program.ours``),
which after ``apt-get install gdnsd`` over pygdnsd is gdnsd 3.8.1 itself.
Started from a Python module rather than a ``gdnsd`` command (``python -m
pygdnsd``, as the tests do), it is this interpreter and package.

The new daemon runs ``start`` detached as gdnsd's is (double-forked, its own
session, re-parented away from us: under systemd a main PID that is another
process's child is "alien" and its exit may go unnoticed), with our stdio and
our ``-D``/``-l``/``-S``. The go-between reports its PID, so that its exit
before taking over tells us it failed. The go-between is inline code run by
this interpreter: nothing of our package, which a package switch may have
removed from disk under us.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pygdnsd.daemon.initscript_verbs import process_gone
from pygdnsd.errors import GdnsdError

# argv: report fd, then the command. Forks the command off in a session of its
# own, writes its PID to the report fd and exits: the command is nobody's child.
_GO_BETWEEN = """\
import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    os.setsid()
    os.execv(sys.argv[2], sys.argv[2:])
os.write(report, str(pid).encode())
"""
SPAWN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Program:
    """How to run "the installed gdnsd", and the flags a replacement inherits from us."""

    argv: tuple[str, ...]
    flags: tuple[str, ...] = ()  # "-D", "-l", "-S"

    @classmethod
    def ours(cls, argv0: str, flags: Sequence[str] = ()) -> Program:
        """The ``gdnsd`` command at ``argv0`` (made absolute now: a daemon works from "/"),
        else this interpreter running our package."""
        path = Path(os.path.abspath(argv0)) if argv0 else None
        if path is not None and path.name == "gdnsd" and os.access(path, os.X_OK):
            return cls((str(path),), tuple(flags))
        return cls((sys.executable, "-m", "pygdnsd"), tuple(flags))

    def replacement_command(self, cfgdir: Path) -> list[str]:
        return [*self.argv, "-c", str(cfgdir.resolve()), "-R", *self.flags, "start"]


@dataclass(frozen=True, slots=True)
class Spawned:
    """The detached replacement daemon."""

    pid: int

    def gone(self) -> bool:
        return process_gone(self.pid)


def spawn_replacement(program: Program, cfgdir: Path) -> Spawned:
    """Start ``program -R start`` detached; its PID once it runs (raises if it could not be forked)."""
    read_end, write_end = os.pipe()
    try:
        go_between = subprocess.Popen(
            [sys.executable, "-c", _GO_BETWEEN, str(write_end), *program.replacement_command(cfgdir)],
            stdin=subprocess.DEVNULL,
            # Ours, as gdnsd passes its own: where we log without a log daemon (a
            # kept terminal or file, see log.keeps_lines), the new daemon may too.
            stdout=None,
            stderr=None,
            close_fds=True,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        write_end = -1
        reported = b""
        with os.fdopen(read_end, "rb") as report:
            read_end = -1
            reported = report.read(32)  # EOF once the go-between exits
        status = go_between.wait(SPAWN_TIMEOUT)
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    if status != 0 or not reported.isdigit():
        raise GdnsdError(f"could not start the replacement daemon (go-between exit status {status})")
    return Spawned(int(reported))
