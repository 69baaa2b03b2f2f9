"""tests/loadgen.py running inside a container, in the background, while a test acts.

The generator runs in the container's network namespace (the daemon there
listens on the container's own loopback) and reports, besides its tally, the
CLOCK_MONOTONIC value at which it began sending. nspawn gives the container no
time namespace, so that value compares directly with ``time.monotonic()`` on
the host: a test can tell whether a lost query was sent before or after some
action it took (``LoadOutcome.udp_losses_after``).

    with BackgroundLoad(container, LoadSpec(qps=5000, duration=30)) as load:
        ...  # reload, crash, etc.
        outcome = load.wait()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from container.systemd_container import CONTAINER_REPO, ContainerError, SystemdContainer
from daemon_support import wait_for
from loadgen import LoadOutcome, LoadSpec, run_argv


class BackgroundLoad:
    """One loadgen run inside ``container``; the process is killed by PID if left running."""

    def __init__(self, container: SystemdContainer, spec: LoadSpec) -> None:
        self.container = container
        self.spec = spec
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> BackgroundLoad:
        # The bound repo's loadgen, so host and container run the same code.
        argv = run_argv("python3", f"{CONTAINER_REPO}/tests/loadgen.py", self.spec)
        self.process = subprocess.Popen(
            self.container.command(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self

    def wait_until_served(self, timeout: float = 30.0) -> None:
        """Until the daemon's counters (``gdnsdctl stats``) grow by queries of each
        kind the load sends: it reaches the daemon, so what a test does next is under load."""
        kinds = [kind for kind, rate in (("udp", self.spec.qps), ("tcp", self.spec.tcp_rate)) if rate]

        def counts() -> list[int]:
            found = self.container.gdnsd_stats()
            return [int(found[kind]["reqs"]) for kind in kinds]

        first = counts()
        served = wait_for(lambda: all(now > then for now, then in zip(counts(), first, strict=True)), timeout)
        if not served:
            raise ContainerError(f"the load did not reach the daemon within {timeout:.0f} s")

    def wait(self) -> LoadOutcome:
        """Wait for the run to end (bounded by its own duration plus slack) and parse it."""
        assert self.process is not None
        spec = self.spec
        limit = spec.duration + spec.grace + 4 * spec.tcp_timeout + 60
        try:
            stdout, stderr = self.process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ContainerError(f"loadgen did not finish within {limit:.0f} s") from None
        try:
            return LoadOutcome.from_report(stdout)
        except ValueError:
            raise ContainerError(f"loadgen exited {self.process.returncode}: {stderr}") from None

    def kill(self) -> None:
        """Kill the generator (nsenter forks it: kill the child, then nsenter) and reap."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        process.kill()
        process.communicate(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.kill()
