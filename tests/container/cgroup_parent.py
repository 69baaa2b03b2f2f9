"""A private parent cgroup for one nspawn, so its payload/ and supervisor/ land below it.

On a host whose PID 1 is not systemd (hybrid cgroup v1 + v2 here) nspawn must
not create its cgroups next to whatever the CI runner uses, and we must be able
to find and remove everything it made afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def hierarchies(root: Path = CGROUP_ROOT) -> tuple[Path, ...]:
    """The hierarchies systemd uses: the cgroup2 root, or name=systemd (+ unified) on v1."""
    if (root / "cgroup.controllers").exists():
        return (root,)
    found = tuple(path for path in (root / "systemd", root / "unified") if path.is_dir())
    if not found:
        raise RuntimeError(f"no systemd or cgroup2 hierarchy under {root}")
    return found


@dataclass(frozen=True)
class CgroupParent:
    """One directory of the same name in each hierarchy."""

    name: str
    roots: tuple[Path, ...]

    @classmethod
    def create(cls, name: str) -> CgroupParent:
        parent = cls(name, hierarchies())
        for path in parent.paths():
            path.mkdir(exist_ok=True)
        return parent

    def paths(self) -> tuple[Path, ...]:
        return tuple(root / self.name for root in self.roots)

    def procs_files(self) -> tuple[Path, ...]:
        return tuple(path / "cgroup.procs" for path in self.paths())

    def pids(self) -> set[int]:
        """Every process in this cgroup or below it, in any hierarchy."""
        found: set[int] = set()
        for top in self.paths():
            if not top.is_dir():
                continue
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(line) for line in procs.read_text().split())
        return found

    def kill_all(self, deadline_seconds: float = 10.0) -> None:
        """SIGKILL whatever is left in the cgroup (all of it was started for this container)."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        raise RuntimeError(f"processes {sorted(self.pids())} survive in cgroup {self.name}")

    def remove(self) -> list[Path]:
        """rmdir the tree bottom-up; return the directories that could not be removed."""
        stuck: list[Path] = []
        for top in self.paths():
            if not top.is_dir():
                continue
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for path in [*dirs, top]:
                try:
                    path.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    stuck.append(path)
        return stuck
