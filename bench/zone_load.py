"""Zone loading: Debian's gdnsd vs pygdnsd on the same generated zones (issue 6).

Usage::

    .venv/bin/python bench/zone_load.py [--records 1000000] [--zones 1000]
        [--zone-records 1000] [--only big|many] [--no-start] [--keep DIR]

Two data sets are generated into a temp dir (deterministic, so every run
sees the same bytes):

* ``big``: one zone of about ``--records`` records of mixed types (A, AAAA,
  MX, TXT, CNAME, SRV, NS delegations with glue; some lines carry a TTL or
  the class, some owners are blank or absolute, one stretch sits under
  ``$ORIGIN``).
* ``many``: ``--zones`` zones of ``--zone-records`` records each.

For each set and server this runs ``checkconf`` (wall time; peak RSS of the
process, which is the largest of it and any worker it reaped, as wait4
reports) and ``start`` until the zone answers a UDP SOA query on loopback
(wall time; peak RSS summed over the process tree, sampled). It prints one
table with the ratios to gdnsd. Every process started is killed by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import free_port

REPO = Path(__file__).resolve().parent.parent
GDNSD = ("/usr/sbin/gdnsd",)
PYGDNSD = (str(REPO / ".venv/bin/python"), "-m", "pygdnsd")
TIMEOUT = 600.0
POLL = 0.02


# -- data ------------------------------------------------------------------


def _v4(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _v6(i: int) -> str:
    return f"2001:db8:{(i >> 16) & 0xFFFF:x}::{i & 0xFFFF:x}"


def zone_lines(records: int) -> Iterator[str]:
    """About ``records`` records of mixed types and line shapes."""
    yield (
        "$TTL 3600\n"
        "@ 86400 IN SOA ns1 hostmaster 2024010101 7200 1800 259200 900\n"
        "@ NS ns1\n"
        "@ NS ns2\n"
        "ns1 A 192.0.2.1\n"
        "ns2 A 192.0.2.2\n"
    )
    n = 5
    i = 0
    while n < records:
        kind = i % 12
        if kind == 0:
            yield f"a{i} A {_v4(i)}\n    AAAA {_v6(i)}\n"
            n += 2
        elif kind == 1:
            yield f"a{i} 300 IN A {_v4(i)}\n"
            n += 1
        elif kind == 2:
            yield f"a{i}.@Z IN 600 A {_v4(i)}\n"
            n += 1
        elif kind == 3:
            yield f"a{i} AAAA {_v6(i)}\n"
            n += 1
        elif kind == 4:
            yield f"m{i} MX 10 a{i - 4}\nm{i} MX 20 mail.example.net.\n"
            n += 2
        elif kind == 5:
            yield f't{i} TXT "v=spf1 ip4:{_v4(i)} -all" "record {i}"\n'
            n += 1
        elif kind == 6:
            yield f"c{i} CNAME a{i - 6}\n"
            n += 1
        elif kind == 7:
            yield f"_sip._tcp.s{i} 60 SRV 10 20 5060 a{i - 7}\n"
            n += 1
        elif kind == 8:
            yield f"d{i} NS ns1.d{i}\nd{i} NS ns2.d{i}\nns1.d{i} A {_v4(i)}\nns2.d{i} AAAA {_v6(i)}\n"
            n += 4
        elif kind == 9:
            yield f"$ORIGIN o{i}.@Z\n@ A {_v4(i)}\nwww CNAME @\n$ORIGIN @Z\n"
            n += 2
        elif kind == 10:
            yield f"h{i}.x.y TXT plain{i}\n"
            n += 1
        else:
            yield f"p{i} PTR host{i}.example.net.\n"
            n += 1
        i += 1


def write_zone(path: Path, records: int) -> None:
    with path.open("w") as out:
        chunk: list[str] = []
        for line in zone_lines(records):
            chunk.append(line)
            if len(chunk) >= 10_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


def write_config(cfgdir: Path, port: int) -> None:
    run = cfgdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    (cfgdir / "config").write_text(
        "options => {\n"
        "  listen => [ 127.0.0.1 ]\n"
        f"  dns_port => {port}\n"
        f"  run_dir => {run}\n"
        f"  state_dir => {run}\n"
        "}\n"
    )


def build(base: Path, name: str, zones: int, records: int) -> tuple[Path, str]:
    """A config dir with ``zones`` zones of ``records`` records; returns it and a zone to probe."""
    cfgdir = base / name
    zdir = cfgdir / "zones"
    zdir.mkdir(parents=True, exist_ok=True)
    first = ""
    for z in range(zones):
        zname = "big.example" if zones == 1 else f"z{z}.example"
        first = first or zname
        write_zone(zdir / zname, records)
    return cfgdir, first


# -- measuring -------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (one level of worker processes is all we start)."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            out += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return out


def _status_mb(pid: int, key: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rss_mb(pids: list[int]) -> float:
    """The tree's peak: the main process's high-water mark, or the summed RSS now if larger.

    Summing RSS counts pages a forked worker shares with its parent twice,
    which errs against whoever uses workers.
    """
    now = sum(_status_mb(pid, "VmRSS:") for pid in pids)
    return max(now, _status_mb(pids[0], "VmHWM:"))


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    seconds: float
    rss_mb: float
    note: str = ""


def checkconf(argv: tuple[str, ...], cfgdir: Path) -> Result:
    errfile = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the bounded wait
    began = time.monotonic()
    proc = subprocess.Popen([*argv, "-c", str(cfgdir), "checkconf"], stdout=subprocess.DEVNULL, stderr=errfile)
    deadline = began + TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(POLL)
    seconds = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    errfile.seek(0)
    err = errfile.read()
    errfile.close()
    tail = err.decode(errors="replace").strip().splitlines()[-1:] if proc.returncode else []
    return Result(proc.returncode == 0, seconds, usage.ru_maxrss / 1024, " ".join(tail))


def _soa_query(zone: str) -> bytes:
    qname = b"".join(bytes((len(p),)) + p.encode() for p in zone.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", 0x5A5A, 0, 1, 0, 0, 0) + qname + struct.pack("!HH", 6, 1)


def start_to_serving(argv: tuple[str, ...], cfgdir: Path, port: int, zone: str) -> Result:
    """Time from exec to the first answer for the zone's SOA; peak tree PSS meanwhile."""
    query = _soa_query(zone)
    began = time.monotonic()
    proc = subprocess.Popen(
        [*argv, "-c", str(cfgdir), "start"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(POLL)
            deadline = began + TIMEOUT
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    return Result(False, time.monotonic() - began, peak, f"exited {proc.returncode}")
                peak = max(peak, _rss_mb(_tree(proc.pid)))
                sock.sendto(query, ("127.0.0.1", port))
                try:
                    reply = sock.recv(4096)
                except (TimeoutError, ConnectionRefusedError):
                    continue
                if reply[:2] == query[:2] and reply[3] & 0x0F == 0:
                    seconds = time.monotonic() - began
                    peak = max(peak, _rss_mb(_tree(proc.pid)))
                    return Result(True, seconds, peak)
            return Result(False, TIMEOUT, peak, "timed out")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--zones", type=int, default=1_000)
    parser.add_argument("--zone-records", type=int, default=1_000)
    parser.add_argument("--only", choices=("big", "many"))
    parser.add_argument("--no-start", action="store_true", help="checkconf only")
    parser.add_argument("--keep", type=Path, help="generate into (and keep) this dir")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="zone_load."))
    base.mkdir(parents=True, exist_ok=True)
    sets = []
    if args.only in (None, "big"):
        sets.append((f"big ({args.records} rr)", "big", 1, args.records))
    if args.only in (None, "many"):
        sets.append((f"many ({args.zones}x{args.zone_records})", "many", args.zones, args.zone_records))
    rows: list[tuple[str, str, str, Result, Result]] = []
    try:
        for label, name, zones, records in sets:
            cfgdir, probe = build(base, name, zones, records)
            for step in ("checkconf", "start"):
                if step == "start" and args.no_start:
                    continue
                results = []
                for server, argv in (("gdnsd", GDNSD), ("pygdnsd", PYGDNSD)):
                    port = free_port()
                    write_config(cfgdir, port)
                    if step == "checkconf":
                        res = checkconf(argv, cfgdir)
                    else:
                        res = start_to_serving(argv, cfgdir, port, probe)
                    results.append(res)
                    print(f"{label:24} {step:9} {server:8} {res.seconds:7.2f} s {res.rss_mb:7.1f} MB"
                          f" {'' if res.ok else 'FAILED ' + res.note}", file=sys.stderr, flush=True)
                rows.append((label, step, "", results[0], results[1]))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'data set':24} {'step':9} {'gdnsd s':>8} {'py s':>8} {'ratio':>6}"
          f" {'gdnsd MB':>9} {'py MB':>8} {'ratio':>6}")
    for label, step, _, ref, ours in rows:
        tratio = ours.seconds / ref.seconds if ref.seconds else 0.0
        mratio = ours.rss_mb / ref.rss_mb if ref.rss_mb else 0.0
        flag = "" if ref.ok and ours.ok else f"  (FAILED: {ref.note or ours.note})"
        print(f"{label:24} {step:9} {ref.seconds:8.2f} {ours.seconds:8.2f} {tratio:6.2f}"
              f" {ref.rss_mb:9.1f} {ours.rss_mb:8.1f} {mratio:6.2f}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
