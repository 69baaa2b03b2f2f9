"""Boot Debian 12 with systemd 252 as PID 1 in systemd-nspawn and run commands inside.

Quirks this handles (see shared/reference/handoff-facts.md):

* ``--register=no --keep-unit``: without both nspawn looks for the host's system
  bus, which does not exist when the host's PID 1 is not systemd.
* nspawn starts in a private parent cgroup (``CgroupParent``) that is removed
  afterwards, with anything left in it.
* Commands run through ``nsenter -t <container PID 1> -a`` (no machinectl), with
  ``env -C /`` rather than ``nsenter --wd``, which would open the host's cwd.
* systemctl only works once PID 1 has created /run/systemd/private.
* ``--volatile=overlay`` puts a tmpfs over the cached tree, so containers never
  modify the cache and several can boot the same tree (``SYSTEMD_NSPAWN_LOCK=0``).
* A pure cgroup2 tree inside by default (``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1``), as
  on a Debian 12 host; ``unified_cgroup=False`` gives the host's layout (hybrid here).
* ``--private-network`` by default: the container has only its own loopback, so
  a daemon inside may bind 127.0.0.1:53 and nothing leaves the machine. Send
  queries from inside with ``run(["dig", ...])``.

The repository is bound read-only at ``CONTAINER_REPO`` (/opt/pygdnsd, not under
/tmp, so units with PrivateTmp=true see it); ``install_pygdnsd_commands`` puts
``gdnsd``/``gdnsdctl`` wrappers at Debian's paths that run the package from there with
Debian's python3 (the same 3.11.2 as the dev venv; dnslib, systemd, pydbus come
from Debian packages in the rootfs).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from container.cgroup_parent import CgroupParent

REPO = Path(__file__).resolve().parents[2]
CONTAINER_REPO = "/opt/pygdnsd"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {
    "PATH": CONTAINER_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "cat",
    "SYSTEMD_COLORS": "0",
    "PYTHONDONTWRITEBYTECODE": "1",  # the repo is bound read-only
}
READY_STATES = ("running", "degraded")
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")

_machine_numbers = itertools.count()

# Runs as the process that execs nspawn: join the private cgroups first, so nspawn
# creates its own below them. Arguments: N, N cgroup.procs files, then nspawn's argv.
_JOIN_CGROUPS_THEN_EXEC = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; '
    'exec "$@"'
)


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the container."""

    host: Path
    container: str
    read_only: bool = True

    def nspawn_arg(self) -> str:
        option = "--bind-ro" if self.read_only else "--bind"
        return f"{option}={self.host}:{self.container}"


class ContainerError(RuntimeError):
    """The container failed to boot, or a command inside it failed."""


class SystemdContainer:
    """One booted container; use as a context manager so it is always torn down.

    ``run`` returns a ``CompletedProcess`` with text stdout/stderr; with
    ``check=True`` a non-zero exit raises ``ContainerError`` carrying both.
    """

    def __init__(
        self,
        rootfs: Path,
        *,
        binds: Sequence[Bind] = (),
        bind_repo: bool = True,
        private_network: bool = True,
        unified_cgroup: bool = True,
        boot_timeout: float = 120.0,
        log_dir: Path | None = None,
    ) -> None:
        self.rootfs = rootfs
        self.binds = (Bind(REPO, CONTAINER_REPO), *binds) if bind_repo else tuple(binds)
        self.private_network = private_network
        self.unified_cgroup = unified_cgroup
        self.boot_timeout = boot_timeout
        self.machine = f"pygdnsd-{os.getpid()}-{next(_machine_numbers)}"
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"{self.machine}-"))
        self.console_log = self.log_dir / f"{self.machine}.console.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.cgroup: CgroupParent | None = None
        self._pid1: int | None = None
        self.boot_state = ""
        self.boot_seconds = 0.0
        self.failed_units_at_boot = ""
        self.exit_status: int | None = None

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> SystemdContainer:
        try:
            self.boot()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    @property
    def pid1(self) -> int:
        """The container's PID 1 (systemd) as the host sees it."""
        if self._pid1 is None:
            raise ContainerError(f"container {self.machine} is not booted")
        return self._pid1

    def nspawn_command(self) -> list[str]:
        command = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={self.machine}",
            f"--directory={self.rootfs}",
            "--volatile=overlay",
            "--console=pipe",
            "--resolv-conf=off",
            "--timezone=off",
        ]
        if self.private_network:
            command.append("--private-network")
        command.extend(bind.nspawn_arg() for bind in self.binds)
        return command

    def boot(self) -> None:
        started = time.monotonic()
        deadline = started + self.boot_timeout
        self.cgroup = CgroupParent.create(self.machine)
        env = {**os.environ, "SYSTEMD_NSPAWN_LOCK": "0"}
        if self.unified_cgroup:
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        procs = [str(path) for path in self.cgroup.procs_files()]
        with open(self.console_log, "wb") as console:
            self.nspawn = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    _JOIN_CGROUPS_THEN_EXEC,
                    "sh",
                    str(len(procs)),
                    *procs,
                    *self.nspawn_command(),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a ^C in the terminal is ours to handle, not nspawn's
            )
        self._pid1 = self._wait_for_pid1(deadline)
        self._wait_for_private_bus(deadline)
        remaining = max(1.0, deadline - time.monotonic())
        try:
            state = self.run(["systemctl", "is-system-running", "--wait"], timeout=remaining)
        except subprocess.TimeoutExpired:
            self._boot_failed("systemctl is-system-running --wait timed out")
        self.boot_state = state.stdout.strip()
        if self.boot_state not in READY_STATES:
            self._boot_failed(f"system state is {self.boot_state!r}")
        if self.boot_state == "degraded":
            self.failed_units_at_boot = self.run(["systemctl", "--failed", "--no-legend"]).stdout
        self.boot_seconds = time.monotonic() - started

    def _wait_for_pid1(self, deadline: float) -> int:
        assert self.nspawn is not None
        nspawn_pid = self.nspawn.pid
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children")
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                self._boot_failed(f"systemd-nspawn exited with {self.nspawn.returncode}")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            time.sleep(0.05)
        self._boot_failed("no systemd process appeared under systemd-nspawn")

    def _wait_for_private_bus(self, deadline: float) -> None:
        # Seen from the host through PID 1's root: no process needed per poll.
        private = Path(f"/proc/{self.pid1}/root/run/systemd/private")
        while time.monotonic() < deadline:
            if private.is_socket():
                return
            if self.nspawn is not None and self.nspawn.poll() is not None:
                self._boot_failed(f"systemd-nspawn exited with {self.nspawn.returncode}")
            time.sleep(0.05)
        self._boot_failed("/run/systemd/private did not appear")

    def _boot_failed(self, reason: str) -> NoReturn:
        raise ContainerError(
            f"container {self.machine} ({self.rootfs}) did not boot: {reason}; "
            f"console log {self.console_log}:\n{self.console_tail()}"
        )

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError as error:
            return f"(no console log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def shutdown(self, timeout: float = 60.0) -> int | None:
        """Power off (escalating to signals), then remove cgroups, mounts and dirs.

        Returns nspawn's exit status (0 after a clean poweroff). Safe to call twice.
        """
        nspawn = self.nspawn
        if nspawn is not None and nspawn.poll() is None:
            if self._pid1 is not None:
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    self.run(["systemctl", "poweroff", "--no-block"], timeout=20)
            for signum in (None, signal.SIGTERM, signal.SIGKILL):
                if signum is not None:
                    # nspawn turns SIGTERM into a poweroff request to the container.
                    with contextlib.suppress(ProcessLookupError):
                        nspawn.send_signal(signum)
                try:
                    nspawn.wait(timeout=timeout if signum is None else 15)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if nspawn is not None:
            self.exit_status = nspawn.poll()
            self.nspawn = None
        problems: list[str] = []
        if self.cgroup is not None:
            try:
                self.cgroup.kill_all()
            except RuntimeError as error:
                problems.append(str(error))
            stuck = self.cgroup.remove()
            if stuck:
                problems.append(f"cgroups not removed: {stuck}")
            self.cgroup = None
        problems.extend(self._remove_leftover_mounts())
        shutil.rmtree(PROPAGATE_DIR / self.machine, ignore_errors=True)
        self._pid1 = None
        if problems:
            raise ContainerError(f"cleanup of {self.machine} incomplete: {'; '.join(problems)}")
        if self._own_log_dir and self.exit_status == 0:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return self.exit_status

    def _remove_leftover_mounts(self) -> list[str]:
        leftovers = mounts_mentioning(self.machine)
        for mount_point in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], capture_output=True, timeout=30)
        still = mounts_mentioning(self.machine)
        return [f"mounts left: {still}"] if still else []

    # --- inside the container ------------------------------------------------

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """The host argv running ``argv`` in all the container's namespaces, clean env, cwd /."""
        pairs = [f"{key}={value}" for key, value in {**BASE_ENV, **(env or {})}.items()]
        return ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", "-C", "/", *pairs, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float = 120.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(argv, env),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"{list(argv)} exited with {result.returncode} in {self.machine}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def write_file(self, dst: str, content: str | bytes, mode: int = 0o644) -> None:
        """Create ``dst`` (and its parent dirs) inside the container."""
        data = content.encode() if isinstance(content, str) else content
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        result = subprocess.run(
            self.command(["/bin/sh", "-c", script, "sh", dst, f"{mode:o}"]),
            input=data,
            capture_output=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise ContainerError(f"writing {dst} in {self.machine} failed: {result.stderr!r}")

    def read_file(self, path: str) -> str:
        return self.run(["cat", path], check=True).stdout

    def generation(self, pid: int) -> set[int]:
        """``pid`` and its child processes: one daemon with its worker processes."""
        found = self.run(["sh", "-c", f"cat /proc/{pid}/task/*/children"])
        return {pid} | {int(child) for child in found.stdout.split()}

    def copy_in(self, src: Path, dst: str) -> None:
        """Copy a host file or directory tree to ``dst`` inside (a dir's contents go into dst)."""
        if not src.is_dir():
            self.write_file(dst, src.read_bytes(), src.stat().st_mode & 0o7777)
            return
        packer = subprocess.Popen(
            ["tar", "-C", str(src), "-cf", "-", "."],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        script = 'mkdir -p "$1" && tar -C "$1" -xf -'
        unpacked = subprocess.run(
            self.command(["/bin/sh", "-c", script, "sh", dst]),
            stdin=packer.stdout,
            capture_output=True,
            timeout=300,
        )
        assert packer.stdout is not None
        packer.stdout.close()
        packed_status = packer.wait(timeout=60)
        packer_err = packer.stderr.read() if packer.stderr is not None else b""
        if packer.stderr is not None:
            packer.stderr.close()
        if packed_status != 0 or unpacked.returncode != 0:
            raise ContainerError(
                f"copying {src} to {self.machine}:{dst} failed: {packer_err!r} {unpacked.stderr!r}"
            )

    def unit_properties(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show UNIT --property=...`` as a mapping."""
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)], check=True)
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def dig(self, qname: str, tcp: bool = False, wait: int = 2) -> str:
        """``dig +short`` for ``qname``'s A records at 127.0.0.1 inside: one try of ``wait`` seconds."""
        argv = ["dig", "+short", f"+time={wait}", "+tries=1", "@127.0.0.1", qname, "A"]
        return self.run([*argv, "+tcp"] if tcp else argv, check=True).stdout.strip()

    def gdnsd_stats(self) -> dict[str, Any]:
        """``gdnsdctl stats`` of the daemon on /etc/gdnsd inside, parsed."""
        out = self.run(["gdnsdctl", "-c", "/etc/gdnsd", "stats"], check=True).stdout
        parsed: dict[str, Any] = json.loads(out)
        return parsed

    def journal(self, *args: str) -> str:
        """``journalctl --no-pager`` output inside, e.g. ``journal("-t", "gdnsd", "-o", "cat")``."""
        return self.run(["journalctl", "--no-pager", *args], check=True).stdout

    def add_gdnsd_user(self) -> None:
        """The ``gdnsd`` system user and group, as Debian's package creates them."""
        self.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/var/lib/gdnsd", "--shell", "/usr/sbin/nologin", "gdnsd"],
            check=True,
        )

    def install_gdnsd(self, config: str, zones: Mapping[str, str], units: Sequence[str]) -> None:
        """pygdnsd as Debian's gdnsd package: its commands, the ``gdnsd`` user,
        /etc/gdnsd with ``config`` and ``zones`` (file name: text), the repo's ``units``."""
        self.install_pygdnsd_commands()
        self.add_gdnsd_user()
        self.write_file("/etc/gdnsd/config", config)
        for name, text in zones.items():
            self.write_file(f"/etc/gdnsd/zones/{name}", text)
        for unit in units:
            self.copy_in(REPO / "units" / unit, f"/etc/systemd/system/{unit}")
        self.run(["systemctl", "daemon-reload"], check=True)

    def install_pygdnsd_commands(self) -> None:
        """``gdnsd`` and ``gdnsdctl`` where Debian's package puts them, running the bound repo.

        So Debian's gdnsd.service (ExecStart=/usr/sbin/gdnsd, ExecReload=/usr/bin/gdnsdctl)
        works unchanged; the container's /usr is a throwaway overlay.
        """
        for path, module in (("/usr/sbin/gdnsd", "gdnsd"), ("/usr/bin/gdnsdctl", "gdnsdctl")):
            self.write_file(
                path,
                "#!/usr/bin/python3\n"
                "import sys\n"
                f"sys.path.insert(0, {CONTAINER_REPO + '/service'!r})\n"
                f"from pygdnsd.cli.{module} import main\n"
                "sys.exit(main())\n",
                mode=0o755,
            )


def mounts_mentioning(word: str) -> list[str]:
    """Mount points in the host's mount table whose path contains ``word``."""
    points: list[str] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if len(fields) > 4 and word in fields[4]:
                points.append(fields[4])
    return points
