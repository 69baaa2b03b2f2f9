"""Lost queries and replace times: pygdnsd's ``gdnsd replace`` vs Debian gdnsd 3.8.1's.

A benchmark, not a test: it prints figures and asserts nothing.

    bench/replace_loss [--replaces 20] [--interval 2] [--qps 5000] [--tcp-rate 200]
                       [--servers gdnsd,pygdnsd] [--udp-rcvbuf N] [--keep]

For each server in turn (same run, same load): a fresh config dir under a temp
dir (listen 127.0.0.1 on a free port, run/state dirs inside, one small zone),
the daemon started, tests/loadgen.py sending UDP at --qps and TCP queries on
fresh connections at --tcp-rate, and --replaces replaces, one every
--interval seconds (or back to back if one takes longer), each timed from the
command's start to its exit. Then a table: replaces that succeeded, UDP
sent/lost/failed, TCP sent/failed, replace duration min/median/max, and the
pygdnsd/gdnsd ratios.

How each is run:

* pygdnsd: ``gdnsd -c DIR daemonize``, then ``gdnsd -c DIR replace`` (the
  helper ExecReload runs: exit 0 once the new instance serves and the old one
  is gone), the daemon's pid from the pidfile after each replace.
* gdnsd 3.8.1: ``/usr/sbin/gdnsd -c DIR start`` in the background (its
  ``daemonize`` exits 42 on this machine: it sets SIGCHLD to SIG_IGN, so its
  wait for the intermediate child fails with ECHILD), then
  ``/usr/bin/gdnsdctl -c DIR replace``, the pid from ``gdnsdctl status``.

Loopback only; every daemon generation's pid is recorded and killed by pid at
the end (after a ``stop``), the temp dirs removed unless --keep. Bounded: each
command has a timeout, the load its fixed duration.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import free_port

from loadgen import LoadOutcome, LoadResult, LoadSpec, run_argv
from pygdnsd.daemon.initscript_verbs import process_gone, wait_gone

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
LOADGEN = REPO / "tests" / "loadgen.py"
ZONE = "example.com"
QNAME = f"www.{ZONE}"
ZONE_TEXT = (REPO / "examples" / "gdnsd" / "zones" / ZONE).read_text()
COMMAND_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
WARMUP = 2.0  # seconds of load before the first replace
TAIL = 3.0  # seconds of load after the last planned replace
STATUS_PID = re.compile(r"running at PID (\d+)")


@dataclass(frozen=True)
class Contender:
    """One server: how to start it, replace it, and ask it for its pid."""

    name: str
    start: tuple[str, ...]  # + -c DIR <action>
    start_action: str  # "daemonize" (returns once serving) or "start" (foreground, backgrounded here)
    replace: tuple[str, ...]  # full argv prefix; -c DIR replace appended
    ctl: tuple[str, ...]

    def argv(self, prefix: Sequence[str], cfgdir: Path, action: str) -> list[str]:
        return [*prefix, "-c", str(cfgdir), action]


PYGDNSD = Contender(
    name="pygdnsd",
    start=(str(PYTHON), "-m", "pygdnsd"),
    start_action="daemonize",
    replace=(str(PYTHON), "-m", "pygdnsd"),
    ctl=(str(PYTHON), "-m", "pygdnsd.cli.gdnsdctl"),
)
GDNSD = Contender(
    name="gdnsd",
    start=("/usr/sbin/gdnsd",),
    start_action="start",
    replace=("/usr/bin/gdnsdctl",),
    ctl=("/usr/bin/gdnsdctl",),
)
CONTENDERS = {c.name: c for c in (GDNSD, PYGDNSD)}


@dataclass
class Outcome:
    """What one server's run measured."""

    name: str
    replaces: int = 0
    replaced_ok: int = 0
    durations: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    late_replaces: int = 0  # replaces that ended after the load stopped sending
    windows: list[tuple[float, float]] = field(default_factory=list)  # monotonic start, end
    # What the load saw (its loss times are placed against the windows); none if the run failed.
    load: LoadOutcome = field(default_factory=lambda: LoadOutcome(0.0, LoadResult()))
    queue_drops: int = 0  # dropped on the server's full UDP socket queues during the load
    pids: list[int] = field(default_factory=list)


# --- set-up ------------------------------------------------------------------------------


def write_config(root: Path, port: int, udp_rcvbuf: int) -> Path:
    cfgdir = root / "config"
    (cfgdir / "zones").mkdir(parents=True)
    for name in ("run", "state"):
        (root / name).mkdir()
    (cfgdir / "zones" / ZONE).write_text(ZONE_TEXT)
    (cfgdir / "config").write_text(
        "options => {\n"
        "  listen => [ 127.0.0.1 ]\n"
        f"  dns_port => {port}\n"
        f"  run_dir => {root / 'run'}\n"
        f"  state_dir => {root / 'state'}\n"
        + (f"  udp_rcvbuf => {udp_rcvbuf}\n" if udp_rcvbuf else "")
        + "}\n"
    )
    return cfgdir


def answers(port: int, timeout: float = 0.5) -> bool:
    """One UDP query for QNAME gets an answer with our ID."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in QNAME.split(".")) + b"\0"
    message = struct.pack("!HHHHHH", 0x5151, 0, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(message, ("127.0.0.1", port))
            data = sock.recv(4096)
        except OSError:
            return False
    return data[:2] == b"\x51\x51"


def wait_until_answering(port: int, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if answers(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {READY_TIMEOUT:.0f} s")


def daemon_pid(contender: Contender, cfgdir: Path) -> int | None:
    """The running daemon's pid, as its control tool reports it."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        done = subprocess.run(
            contender.argv(contender.ctl, cfgdir, "status"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        found = STATUS_PID.search(done.stdout + done.stderr)
        if found:
            return int(found.group(1))
    return None


def server_queue_drops(port: int) -> int:
    """Datagrams the kernel dropped on the full queues of the sockets bound to ``port``.

    The same sockets pass from generation to generation (both servers hand
    them over), so their counters span the whole run.
    """
    listed = subprocess.run(
        ["ss", "-Huanm", f"sport = :{port}"], capture_output=True, text=True, timeout=30
    ).stdout
    return sum(int(count) for count in re.findall(r"skmem:\([^)]*\bd(\d+)\)", listed))


# --- one server's run --------------------------------------------------------------------


def run_one(contender: Contender, args: argparse.Namespace, root: Path) -> Outcome:
    outcome = Outcome(contender.name)
    port = free_port()
    cfgdir = write_config(root, port, args.udp_rcvbuf)
    log_path = root / "server.log"
    foreground: subprocess.Popen[bytes] | None = None
    load: subprocess.Popen[str] | None = None
    try:
        with open(log_path, "wb") as log:
            start_argv = contender.argv(contender.start, cfgdir, contender.start_action)
            if contender.start_action == "daemonize":
                started = subprocess.run(
                    start_argv, stdout=log, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT
                )
                if started.returncode != 0:
                    raise RuntimeError(f"{start_argv} exited {started.returncode}; see {log_path}")
            else:
                foreground = subprocess.Popen(
                    start_argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
                outcome.pids.append(foreground.pid)
        wait_until_answering(port, foreground)
        first = daemon_pid(contender, cfgdir)
        if first is not None:
            outcome.pids.append(first)

        duration = WARMUP + args.replaces * args.interval + TAIL
        spec = LoadSpec(
            port=port, qname=QNAME, qps=args.qps, tcp_rate=args.tcp_rate, duration=duration, grace=2.0
        )
        drops_before = server_queue_drops(port)
        load = subprocess.Popen(
            run_argv(sys.executable, str(LOADGEN), spec),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        load_began = time.monotonic()
        time.sleep(WARMUP)
        for number in range(args.replaces):
            began = time.monotonic()
            argv = contender.argv(contender.replace, cfgdir, "replace")
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
                status, said = done.returncode, (done.stdout + done.stderr).strip()
            except subprocess.TimeoutExpired:
                status, said = -1, f"timed out after {COMMAND_TIMEOUT:.0f} s"
            ended = time.monotonic()
            outcome.windows.append((began, ended))
            outcome.replaces += 1
            if status == 0:
                outcome.replaced_ok += 1
                outcome.durations.append(ended - began)
            else:
                outcome.failures.append(f"replace {number + 1}: exit {status}: {said[-300:]}")
            if ended > load_began + duration:
                outcome.late_replaces += 1
            pid = daemon_pid(contender, cfgdir)
            if pid is not None and pid not in outcome.pids:
                outcome.pids.append(pid)
            next_at = load_began + WARMUP + (number + 1) * args.interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        stdout, stderr = load.communicate(timeout=duration + 60)
        try:
            outcome.load = LoadOutcome.from_report(stdout)
        except ValueError:
            raise RuntimeError(f"loadgen exited {load.returncode}: {stderr[-500:]}") from None
        outcome.queue_drops = server_queue_drops(port) - drops_before
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.communicate(timeout=30)
        stop(contender, cfgdir, outcome.pids, foreground)
    return outcome


def stop(
    contender: Contender, cfgdir: Path, pids: list[int], foreground: subprocess.Popen[bytes] | None
) -> None:
    """A polite stop, then SIGKILL by pid for any generation still alive."""
    last = daemon_pid(contender, cfgdir)
    if last is not None and last not in pids:
        pids.append(last)
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            contender.argv(contender.ctl, cfgdir, "stop"), capture_output=True, timeout=30
        )
    # A zombie child of ours (the backgrounded "start") is as good as gone.
    deadline = time.monotonic() + 10
    for pid in pids:
        wait_gone(pid, max(0.0, deadline - time.monotonic()))
    for pid in pids:
        if not process_gone(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    if foreground is not None:
        if foreground.poll() is None:
            foreground.kill()
        foreground.wait(timeout=30)


# --- the table ---------------------------------------------------------------------------


def ratio(ours: float, theirs: float) -> str:
    if theirs == 0:
        return "=" if ours == 0 else "inf"
    return f"{ours / theirs:.2f}x"


def durations(outcome: Outcome) -> tuple[float, float, float]:
    if not outcome.durations:
        nan = float("nan")
        return (nan, nan, nan)
    found = outcome.durations
    return (min(found), statistics.median(found), max(found))


def losses_in_windows(outcome: Outcome) -> int:
    """Lost UDP queries sent while a replace command ran (of the first 1000 reported)."""
    sent = [outcome.load.started + t for t in outcome.load.result.udp_loss_times]
    return sum(1 for at in sent if any(start <= at <= end for start, end in outcome.windows))


def metrics(outcome: Outcome) -> dict[str, float]:
    """The table's rows for one server; labels ending in (s) are seconds."""
    load = outcome.load.result
    shortest, median, longest = durations(outcome)
    return {
        "replaces ok": float(outcome.replaced_ok),
        "UDP sent": float(load.udp_sent),
        "UDP qps": load.udp_qps,
        "UDP lost": float(load.udp_lost),
        "  of which during a replace*": float(losses_in_windows(outcome)),
        "  dropped on the server's full queues": float(outcome.queue_drops),
        "UDP wrong answers": float(load.udp_failed),
        "TCP sent": float(load.tcp_sent),
        "TCP failed": float(load.tcp_failed),
        "replace min (s)": shortest,
        "replace median (s)": median,
        "replace max (s)": longest,
    }


def table(outcomes: list[Outcome]) -> str:
    names = [o.name for o in outcomes]
    with_ratio = names == ["gdnsd", "pygdnsd"]
    lines = [["", *names, *(["pygdnsd/gdnsd"] if with_ratio else [])]]
    per_server = [metrics(o) for o in outcomes]
    for label in per_server[0] if per_server else {}:
        values = [m[label] for m in per_server]
        if label == "replaces ok":
            shown = [f"{o.replaced_ok}/{o.replaces}" for o in outcomes]
        elif label.endswith("(s)"):
            shown = [f"{v:.3f}" for v in values]
        else:
            shown = [f"{v:.0f}" for v in values]
        lines.append([label, *shown, *([ratio(values[1], values[0])] if with_ratio else [])])
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--replaces", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between replace starts")
    parser.add_argument("--qps", type=float, default=5000.0, help="UDP queries per second")
    parser.add_argument("--tcp-rate", type=float, default=200.0, help="TCP connections per second")
    parser.add_argument("--servers", default="gdnsd,pygdnsd", help="comma-separated: gdnsd,pygdnsd")
    parser.add_argument(
        "--udp-rcvbuf", type=int, default=0,
        help="gdnsd's udp_rcvbuf option for both servers (0: the OS default queue)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, configs)")
    args = parser.parse_args(argv)
    if not 1 <= args.replaces <= 1000 or not 0 < args.interval <= 60:
        parser.error("--replaces must be in [1, 1000] and --interval in (0, 60]")
    if args.udp_rcvbuf and not 4096 <= args.udp_rcvbuf <= 1048576:
        parser.error("--udp-rcvbuf must be 0 or in [4096, 1048576] (gdnsd's range)")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONTENDERS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; choose from {sorted(CONTENDERS)}")
    base = Path(tempfile.mkdtemp(prefix="replace-loss-"))
    outcomes: list[Outcome] = []
    try:
        for name in names:
            root = base / name
            root.mkdir()
            print(f"[{name}] {args.replaces} replaces under load ...", file=sys.stderr, flush=True)
            try:
                outcome = run_one(CONTENDERS[name], args, root)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                outcome = Outcome(name, failures=[f"run failed: {error}"])
            outcomes.append(outcome)
            for failure in outcome.failures[:5]:
                print(f"[{name}] {failure}", file=sys.stderr)
            if outcome.late_replaces:
                print(f"[{name}] {outcome.late_replaces} replaces ended after the load stopped",
                      file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    queue = f"udp_rcvbuf {args.udp_rcvbuf}" if args.udp_rcvbuf else "default UDP queue"
    print(f"{args.replaces} replaces every {args.interval:g} s, UDP {args.qps:g} qps, "
          f"TCP {args.tcp_rate:g} conn/s, {queue}, loopback")
    print(table(outcomes))
    print("* among the first 1000 losses the load generator timestamps")
    return 0 if all(o.replaced_ok == o.replaces and o.replaces for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
