"""Boot a container by hand and run one command in it (default: an interactive shell).

    cd tests && sudo ../.venv/bin/python -m container [COMMAND ARG...]

The container is powered off and cleaned up when the command exits.
"""

from __future__ import annotations

import subprocess
import sys

from container.rootfs import ensure_rootfs
from container.systemd_container import SystemdContainer


def main(argv: list[str]) -> int:
    command = argv or ["bash", "-l"]
    with SystemdContainer(ensure_rootfs()) as container:
        print(
            f"[container] {container.machine} up in {container.boot_seconds:.2f}s "
            f"({container.boot_state}); repo at /opt/pygdnsd",
            file=sys.stderr,
        )
        return subprocess.run(container.command(command, {"TERM": "xterm"})).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
