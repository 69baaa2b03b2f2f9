"""Facts about a process from /proc: when it started, how much memory it holds."""

from __future__ import annotations

import os
import time

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and parentheses)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].decode("ascii").split()


def start_time(pid: int) -> float:
    """The wall-clock time ``pid`` started (OSError if it is gone)."""
    ticks = int(_stat_fields(pid)[19])  # field 22, starttime: clock ticks after boot
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / _TICKS
    return time.time() - age


def resident_bytes(pid: int) -> int:
    """``pid``'s resident memory (OSError if it is gone)."""
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE
