"""``gdnsdctl replace``: the old daemon starts its replacement, as gdnsd does.

It runs ``gdnsd -c CFGDIR -R daemonize`` with the interpreter and package
that run us (so a package upgrade on disk is picked up). That process
double-forks the new daemon, which takes over through the control socket.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def replacement_command(cfgdir: Path) -> list[str]:
    return [sys.executable, "-m", "pygdnsd", "-c", str(cfgdir.resolve()), "-R", "daemonize"]


def spawn_replacement(cfgdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        replacement_command(cfgdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        # Ours: where we log without a log daemon (a kept terminal or file,
        # see log.keeps_lines), the new daemon may log too; else it says where.
        stderr=None,
        close_fds=True,
        start_new_session=True,
    )
