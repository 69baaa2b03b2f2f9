"""``gdnsdctl replace``: the old daemon starts its replacement, as gdnsd does.

gdnsd 3.8.1 runs ``<its own binary> -c CFGDIR -R[D][l] start`` (observed
with strace), so whatever is installed at its path now takes over: a
package upgrade is picked up, and so is a package *switch*. We do the same:
the replacement is the ``gdnsd`` we were started as (``Program.ours``),
which after ``apt-get install gdnsd`` over pygdnsd is gdnsd 3.8.1 itself.
Started from a Python module rather than a ``gdnsd`` command (``python -m
pygdnsd``, as the tests do), it is this interpreter and package.

The new daemon runs ``start`` in its own session as our child, its stdio
ours (as gdnsd's), with our ``-D``/``-l``; its exit before taking over
is how we learn it failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Program:
    """How to run "the installed gdnsd", and the flags a replacement inherits from us."""

    argv: tuple[str, ...]
    flags: tuple[str, ...] = ()  # "-D", "-l"

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


def spawn_replacement(program: Program, cfgdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        program.replacement_command(cfgdir),
        stdin=subprocess.DEVNULL,
        # Ours, as gdnsd passes its own: where we log without a log daemon (a
        # kept terminal or file, see log.keeps_lines), the new daemon may too.
        stdout=None,
        stderr=None,
        close_fds=True,
        start_new_session=True,
    )
