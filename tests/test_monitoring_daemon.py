"""Monitoring through the whole daemon (issue 5's acceptance): ``python -m pygdnsd start``
with DYNA names over loopback TCP backends this test runs.

* failover under query load: a primary going down moves the answers to the
  secondary within interval x down_thresh + 1 s, its return brings them back
  after up_thresh checks, and no query fails meanwhile;
* admin_state forcing DOWN/UP and its removal reach the answers within 1 s,
  ``gdnsdctl states`` (ours and Debian's) shows ``DOWN!``/``UP!``; beside
  Debian's gdnsd, the same admin_state steps give the same answers (TTLs
  included) and the same log lines;
* extmon: a hung command is killed at its timeout and reaped, none is left
  after the daemon stops;
* bad plugin/service_types configs: ``checkconf`` fails naming file and key,
  as Debian's gdnsd 3.8.1 fails; what gdnsd accepts (a broken service type
  nothing uses) we accept too;
* 500 tcp_connect resources, half black-holed: the initial round takes one
  timeout, not 500, and the first answers know every state.

Backends: accept-and-close listeners on 127.0.0.2 and 127.0.0.3 (one port);
127.0.0.4 never listens (connects refused). Every process is killed by PID.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from conftest import (
    READY_LINE,
    REAL_GDNSD,
    REAL_GDNSDCTL,
    ForegroundDaemon,
    free_port,
    pygdnsd_python,
)
from daemon_support import env, wait_for
from loadgen import LoadResult, LoadSpec, run_load

PRIMARY, SECONDARY, NEVER = "127.0.0.2", "127.0.0.3", "127.0.0.4"
SOA = "@ SOA ns1 hostmaster 1 7200 1800 259200 900\n@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns2 A 192.0.2.2\n"
STARTUP_TIMEOUT = 30.0


# -- config dirs and the daemon ----------------------------------------------


@dataclass(frozen=True)
class ConfigDir:
    path: Path
    dns_port: int
    state_dir: Path


def write_config(tmp_path: Path, body: str, zone: str) -> ConfigDir:
    """A config dir serving example.com on a free loopback port, ``body`` after the options."""
    cfg, run_dir, state_dir = tmp_path / "cfg", tmp_path / "run", tmp_path / "state"
    for d in (cfg / "zones", run_dir, state_dir):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (cfg / "config").write_text(
        "options => {\n  listen => [ 127.0.0.1 ]\n"
        f"  dns_port => {port}\n  run_dir => {run_dir}\n  state_dir => {state_dir}\n}}\n" + body
    )
    (cfg / "zones" / "example.com").write_text(SOA + zone)
    return ConfigDir(cfg, port, state_dir)


class Daemon(ForegroundDaemon):
    """A daemon (ours, or ``kind`` "gdnsd") in the foreground on ``cfg``."""

    def __init__(self, cfg: ConfigDir, args: tuple[str, ...] = (), kind: str = "pygdnsd") -> None:
        program = [str(REAL_GDNSD)] if kind == "gdnsd" else [pygdnsd_python(), "-m", "pygdnsd"]
        command = [*program, "-c", str(cfg.path), *args, "start"]
        super().__init__(command, env(), f"{kind} on {cfg.path}", STARTUP_TIMEOUT)
        self.cfg = cfg
        self.kind = kind

    def start(self) -> Daemon:  # type: ignore[override]
        super().start()
        return self


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(cfg: ConfigDir, *args: str, kind: str = "pygdnsd") -> Daemon:
        daemon = Daemon(cfg, args, kind)
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.stop()


# -- backends --------------------------------------------------------------


@dataclass
class TcpBackend:
    """An accept-and-close listener on ``address:port``; ``down`` closes it, ``up`` reopens it."""

    address: str
    port: int
    sock: socket.socket | None = None
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def up(self) -> TcpBackend:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, self.port))
        sock.listen(1024)
        sock.settimeout(0.05)
        self.sock = sock
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(sock, self.stopping), daemon=True)
        self.thread.start()
        return self

    @staticmethod
    def _serve(sock: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.close()

    def down(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.sock is not None:
            self.sock.close()
        self.sock = self.thread = None


@pytest.fixture
def backends() -> Iterator[dict[str, TcpBackend]]:
    """Listeners on PRIMARY and SECONDARY, one port for both."""
    out: dict[str, TcpBackend] = {}
    for _ in range(20):
        port = free_port(PRIMARY)
        try:
            for address in (PRIMARY, SECONDARY):
                out[address] = TcpBackend(address, port).up()
            break
        except OSError:
            for backend in out.values():
                backend.down()
            out.clear()
    else:
        raise RuntimeError("no port free on both backend addresses")
    yield out
    for backend in out.values():
        backend.down()


@pytest.fixture
def live_port() -> Iterator[int]:
    backend = TcpBackend("127.0.0.1", free_port()).up()
    yield backend.port
    backend.down()


# -- DNS and control ---------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    rcode: int
    addresses: tuple[str, ...]
    ttl: int | None


def ask(port: int, name: str) -> Answer:
    """One UDP A query to the daemon; a lost query is retried (bounded), a wrong reply raises."""
    query = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        for _ in range(3):
            sock.sendto(query.pack(), ("127.0.0.1", port))
            try:
                reply = DNSRecord.parse(sock.recv(4096))
            except TimeoutError:
                continue
            if reply.header.id != query.header.id:
                continue
            a = [rr for rr in reply.rr if rr.rtype == QTYPE.A]
            return Answer(
                reply.header.rcode,
                tuple(sorted(str(rr.rdata) for rr in a)),
                min((rr.ttl for rr in a), default=None),
            )
    raise AssertionError(f"no answer for {name} from 127.0.0.1:{port}")


def wait_for_answer(
    port: int, name: str, expected: tuple[str, ...], seconds: float
) -> tuple[float, list[Answer]]:
    """Poll ``name`` until it answers ``expected``; (seconds taken, every answer seen)."""
    start = time.monotonic()
    seen: list[Answer] = []
    while time.monotonic() - start < seconds:
        answer = ask(port, name)
        seen.append(answer)
        if answer.addresses == expected:
            return time.monotonic() - start, seen
        time.sleep(0.02)
    raise AssertionError(
        f"{name} did not answer {expected} within {seconds}s; last {seen[-1] if seen else None}"
    )


def states(cfg: ConfigDir, ctl: str) -> str:
    """``gdnsdctl -c CFG states`` stdout, from ours or Debian's."""
    if ctl == "ours":
        argv = [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl"]
    else:
        argv = [str(REAL_GDNSDCTL)]
    done = subprocess.run(
        [*argv, "-c", str(cfg.path), "states"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env(),
    )
    assert done.returncode == 0, f"{ctl} gdnsdctl states: {done.stderr}"
    return done.stdout


def write_admin_state(cfg: ConfigDir, text: str) -> None:
    """Replace admin_state in one step, as an operator's tool would (rename over it)."""
    tmp = cfg.state_dir / "admin_state.tmp"
    tmp.write_text(text)
    tmp.rename(cfg.state_dir / "admin_state")


# -- failover under load -----------------------------------------------------

INTERVAL, DOWN_THRESH, UP_THRESH = 2, 2, 2


def test_failover_under_query_load(
    tmp_path: Path, backends: dict[str, TcpBackend], daemons: Callable[..., Daemon]
) -> None:
    port = backends[PRIMARY].port
    cfg = write_config(
        tmp_path,
        f"""service_types => {{
  tcp => {{ plugin => tcp_connect, port => {port}, interval => {INTERVAL}, timeout => 1,
           down_thresh => {DOWN_THRESH}, up_thresh => {UP_THRESH}, ok_thresh => 2 }}
}}
plugins => {{ simplefo => {{ service_types => tcp, sf => {{ primary => {PRIMARY}, secondary => {SECONDARY} }} }} }}
""",
        "sf 300 DYNA simplefo!sf\n",
    )
    daemon = daemons(cfg)
    assert ask(cfg.dns_port, "sf.example.com").addresses == (PRIMARY,)

    load: list[LoadResult] = []
    spec = LoadSpec(
        port=cfg.dns_port, qname="sf.example.com", qps=500, tcp_rate=20, duration=14, grace=1
    )
    tally = LoadResult()
    loader = threading.Thread(target=lambda: load.append(run_load(spec, tally)), daemon=True)
    loader.start()
    # The failover happens under load: the primary fails once UDP and TCP answers come back.
    assert wait_for(lambda: tally.udp_answered > 0 and tally.tcp_answered > 0, 10.0), tally.summary()

    backends[PRIMARY].down()
    switch, seen = wait_for_answer(cfg.dns_port, "sf.example.com", (SECONDARY,), 10)
    assert switch <= INTERVAL * DOWN_THRESH + 1, f"failover took {switch:.2f}s"
    backends[PRIMARY].up()
    back, seen_back = wait_for_answer(cfg.dns_port, "sf.example.com", (PRIMARY,), 10)
    assert back <= INTERVAL * UP_THRESH + 1, f"return took {back:.2f}s"
    # up_thresh successes in a row, not the first one: at least (up_thresh - 1) intervals.
    assert back >= INTERVAL * (UP_THRESH - 1) - 0.5, f"returned after {back:.2f}s"

    loader.join(timeout=spec.duration + 30)
    assert not loader.is_alive() and load, "load generator did not finish"
    result = load[0]
    for answer in seen + seen_back:
        assert answer.rcode == RCODE.NOERROR and answer.addresses in ((PRIMARY,), (SECONDARY,))
    assert result.clean, result.summary()
    assert result.udp_sent >= 0.8 * spec.qps * spec.duration, result.summary()
    assert result.tcp_answered == result.tcp_sent > 0, result.summary()
    assert re.search(f"state of '{PRIMARY}/tcp' changed from UP/[0-9]+ to DOWN/", daemon.text)
    assert re.search(f"state of '{PRIMARY}/tcp' changed from DOWN/[0-9]+ to UP/", daemon.text)
    print(f"failover {switch:.2f}s, return {back:.2f}s; {result.summary()}")


# -- admin_state ---------------------------------------------------------------


def _state_rows(text: str) -> dict[str, dict[str, str]]:
    rows = json.loads(text)
    assert isinstance(rows, dict)
    return rows


@pytest.mark.skipif(not REAL_GDNSDCTL.exists(), reason="needs Debian's gdnsdctl")
def test_admin_state_forces_answers_within_a_second(
    tmp_path: Path, backends: dict[str, TcpBackend], daemons: Callable[..., Daemon]
) -> None:
    port = backends[PRIMARY].port
    cfg = write_config(
        tmp_path,
        f"""service_types => {{ tcp => {{ plugin => tcp_connect, port => {port}, interval => 10, timeout => 1 }} }}
plugins => {{ simplefo => {{
  service_types => tcp
  sf => {{ primary => {PRIMARY}, secondary => {SECONDARY} }}
  sfd => {{ primary => {NEVER}, secondary => {SECONDARY} }}
}} }}
""",
        "sf 300 DYNA simplefo!sf\nsfd 300 DYNA simplefo!sfd\n",
    )
    daemons(cfg)
    dns = cfg.dns_port
    assert ask(dns, "sf.example.com").addresses == (PRIMARY,)
    assert ask(dns, "sfd.example.com").addresses == (SECONDARY,)

    write_admin_state(cfg, f"# maintenance\n{PRIMARY}/* => DOWN/30\n")
    took, _ = wait_for_answer(dns, "sf.example.com", (SECONDARY,), 3)
    assert took <= 1.0, f"forced DOWN reached the answers after {took:.2f}s"
    ours, theirs = states(cfg, "ours"), states(cfg, "debian")
    assert ours == theirs
    rows = _state_rows(ours)
    assert rows[f"{PRIMARY}/tcp"] == {"state": "DOWN!", "real_state": "UP"}
    assert rows[f"{NEVER}/tcp"] == {"state": "DOWN", "real_state": "DOWN"}

    # Later lines win: the glob forces all down, the exact names force two up. The
    # last line has no newline: gdnsd applies it all the same.
    write_admin_state(cfg, f"*/tcp => DOWN\n{PRIMARY}/tcp => UP\n{NEVER}/tcp => UP/20")
    took, _ = wait_for_answer(dns, "sfd.example.com", (NEVER,), 3)
    assert took <= 1.0, f"forced UP reached the answers after {took:.2f}s"
    assert ask(dns, "sf.example.com").addresses == (PRIMARY,)
    ours, theirs = states(cfg, "ours"), states(cfg, "debian")
    assert ours == theirs
    rows = _state_rows(ours)
    assert rows[f"{PRIMARY}/tcp"] == {"state": "UP!", "real_state": "UP"}
    assert rows[f"{NEVER}/tcp"] == {"state": "UP!", "real_state": "DOWN"}
    assert rows[f"{SECONDARY}/tcp"] == {"state": "DOWN!", "real_state": "UP"}

    (cfg.state_dir / "admin_state").unlink()
    took, _ = wait_for_answer(dns, "sfd.example.com", (SECONDARY,), 3)
    assert took <= 1.0, f"removing admin_state reached the answers after {took:.2f}s"
    assert ask(dns, "sf.example.com").addresses == (PRIMARY,)
    rows = _state_rows(states(cfg, "debian"))
    assert {name: row["state"] for name, row in rows.items()} == {
        f"{PRIMARY}/tcp": "UP",
        f"{SECONDARY}/tcp": "UP",
        f"{NEVER}/tcp": "DOWN",
    }


ADMIN_BODY = f"""service_types => {{ tcp => {{ plugin => tcp_connect, port => @PORT@, interval => 10, timeout => 1 }} }}
plugins => {{
  simplefo => {{
    service_types => tcp
    sf => {{ primary => {PRIMARY}, secondary => {SECONDARY} }}
    sfd => {{ primary => {NEVER}, secondary => {SECONDARY} }}
  }}
  multifo => {{ service_types => tcp, mf => [ {PRIMARY}, {SECONDARY}, {NEVER} ] }}
  metafo => {{ resources => {{
    mt => {{ datacenters => [ d1, d2 ], dcmap => {{ d1 => {PRIMARY}, d2 => {SECONDARY} }}, service_types => tcp }}
  }} }}
}}
"""
ADMIN_ZONE = "sf 300 DYNA simplefo!sf\nsfd 300 DYNA simplefo!sfd\nmf 300 DYNA multifo!mf\nmt 300 DYNA metafo!mt\n"
# Each admin_state in turn; TTLs chosen so a capped and a replaced TTL differ.
ADMIN_STEPS = (
    f"{PRIMARY}/* => DOWN/30\n",
    f"*/tcp => DOWN\n{PRIMARY}/tcp => UP\n{NEVER}/tcp => UP/200",
    "metafo/mt/* => DOWN/400\n",
    f"metafo/mt/d1 => UP/250\n{PRIMARY}/tcp => DOWN/20\n",
    f"metafo/mt/d1 => DOWN/250\n{PRIMARY}/tcp => UP/20\n{SECONDARY}/tcp => UP/200\n",
    f"metafo/mt/d2 => UP/220\n{PRIMARY}/tcp => DOWN/20\n{SECONDARY}/tcp => DOWN/15\n",
)
GDNSD_NOTICE = 15.0  # gdnsd applies admin_state changes more slowly than we do


@pytest.mark.skipif(
    not (REAL_GDNSD.exists() and REAL_GDNSDCTL.exists()), reason="needs Debian's gdnsd"
)
def test_admin_state_answers_match_gdnsd(
    tmp_path: Path, backends: dict[str, TcpBackend], daemons: Callable[..., Daemon]
) -> None:
    body = ADMIN_BODY.replace("@PORT@", str(backends[PRIMARY].port))
    cfgs = {kind: write_config(tmp_path / kind, body, ADMIN_ZONE) for kind in ("gdnsd", "ours")}
    # Forced from the start: the first answers already obey it.
    for cfg in cfgs.values():
        write_admin_state(cfg, f"{SECONDARY}/tcp => DOWN/50\nmetafo/mt/d1 => DOWN/90\n")
    running = {"gdnsd": daemons(cfgs["gdnsd"], kind="gdnsd"), "ours": daemons(cfgs["ours"])}
    names = [line.split()[0] + ".example.com" for line in ADMIN_ZONE.splitlines()]

    def answers(kind: str) -> dict[str, Answer]:
        return {name: ask(cfgs[kind].dns_port, name) for name in names}

    assert answers("ours") == answers("gdnsd")
    first = answers("ours")
    # simplefo with both down answers the primary; metafo with both down the first.
    assert first["sfd.example.com"].addresses == (NEVER,)
    assert first["mt.example.com"].addresses == (PRIMARY,)
    previous = states(cfgs["ours"], "ours")
    for step in ADMIN_STEPS:
        for cfg in cfgs.values():
            write_admin_state(cfg, step)
        # Each step shows other forced states than the one before. gdnsd shows
        # them in ``states`` a moment before its answers use them: wait until ours
        # changed, then until gdnsd's states agree, then until its answers do.
        deadline = time.monotonic() + GDNSD_NOTICE
        while (ours := states(cfgs["ours"], "ours")) == previous:
            assert time.monotonic() < deadline, f"our states never changed after {step!r}"
            time.sleep(0.1)
        previous = ours
        while states(cfgs["gdnsd"], "debian") != ours:
            assert time.monotonic() < deadline, f"states never agreed after {step!r}"
            time.sleep(0.2)
        expected = answers("ours")
        while (theirs := answers("gdnsd")) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert expected == theirs, step
        assert answers("ours") == expected, step
    (cfgs["gdnsd"].state_dir / "admin_state").unlink()
    (cfgs["ours"].state_dir / "admin_state").unlink()

    # What each daemon logged about admin_state and monitoring, in the same words.
    def logged(kind: str) -> list[str]:
        deadline = time.monotonic() + GDNSD_NOTICE
        while "load complete (file deleted)" not in running[kind].text:
            assert time.monotonic() < deadline, f"{kind} never logged the deletion"
            time.sleep(0.1)
        text = running[kind].text.replace(str(cfgs[kind].state_dir), "STATE_DIR")
        wanted = ("admin_state:", "monitoring", "initialized to")
        return [line for line in text.splitlines() if any(w in line for w in wanted)]

    ours_log, gdnsd_log = logged("ours"), logged("gdnsd")
    # The initial round logs each state as its check ends, in no fixed order.
    first = [line for line in ours_log if "initialized to" in line]
    assert sorted(first) == sorted(line for line in gdnsd_log if "initialized to" in line)
    rest = [line for line in ours_log if line not in first]
    assert rest == [line for line in gdnsd_log if "initialized to" not in line], (
        "\n".join(rest) + "\n--- gdnsd:\n" + "\n".join(gdnsd_log)
    )


# -- extmon in the daemon -----------------------------------------------------------


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of every process whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append((int(entry.name), fields[0]))
    return out


def test_extmon_hangs_are_killed_and_reaped_by_the_daemon(
    tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    pids = tmp_path / "pids"
    cfg = write_config(
        tmp_path,
        f"""service_types => {{
  hang => {{ plugin => extmon, timeout => 1, interval => 2, cmd => [ /bin/sh, -c, "echo $$ >> {pids}; exec sleep 30" ] }}
  fine => {{ plugin => extmon, timeout => 1, interval => 2, cmd => [ /bin/true ] }}
}}
plugins => {{ simplefo => {{
  hung => {{ primary => {PRIMARY}, secondary => {SECONDARY}, service_types => hang }}
  ok => {{ primary => {PRIMARY}, secondary => {SECONDARY}, service_types => fine }}
}} }}
""",
        "hung 300 DYNA simplefo!hung\nok 300 DYNA simplefo!ok\n",
    )
    daemon = daemons(cfg)
    assert daemon.proc is not None
    pid = daemon.proc.pid
    assert ask(cfg.dns_port, "ok.example.com").addresses == (PRIMARY,)
    # Both addresses hang: simplefo with both down answers the primary.
    assert ask(cfg.dns_port, "hung.example.com").addresses == (PRIMARY,)
    rows = _state_rows(states(cfg, "ours"))
    assert rows[f"{PRIMARY}/hang"]["state"] == "DOWN"
    assert rows[f"{PRIMARY}/fine"]["state"] == "UP"
    # Two more rounds of checks while serving (each hung command writes its pid as
    # it starts: two a round); every hung command but the ones started in the last
    # timeout must be gone, and no child is a zombie. The round just begun also ran
    # /bin/true, which may be exiting this moment: half a second to reap it, as
    # much as a check half an interval after the round allowed.
    assert wait_for(lambda: len(pids.read_text().split()) >= 6, 15.0), pids.read_text()
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) >= 4, started

    def zombies() -> list[tuple[int, str]]:
        return [c for c in _children(pid) if c[1] == "Z"]

    wait_for(lambda: not zombies(), 0.5)
    assert not zombies(), _children(pid)
    alive = [p for p in started if Path(f"/proc/{p}").exists()]
    assert len(alive) <= 2, f"hung extmon commands outlived their timeout: {alive}"
    daemon.stop()
    for p in started:
        assert not Path(f"/proc/{p}").exists(), f"extmon command {p} outlived the daemon"


# -- checkconf on bad plugin and service_types configs --------------------------


@dataclass(frozen=True)
class BadConfig:
    body: str
    zone: str
    # Each must appear in our error ("{config}" and "{zone}" are the files' paths).
    words: tuple[str, ...]


SF = f"primary => {PRIMARY}, secondary => {SECONDARY}"
BAD = {
    "unknown-plugin": BadConfig(
        "plugins => {\n  nosuch => { r => 127.0.0.1 }\n}\n", "", ("{config}:8:", "'nosuch'")
    ),
    "unknown-monitor-plugin": BadConfig(
        "service_types => {\n  t => { plugin => nosuch, port => 80 }\n}\n",
        "",
        ("{config}:8:", "'t'", "'nosuch'"),
    ),
    "service-type-without-plugin": BadConfig(
        "service_types => {\n  t => { port => 80 }\n}\n", "", ("{config}:8:", "'t'", "'plugin'")
    ),
    "used-tcp-connect-without-port": BadConfig(
        "service_types => {\n  t => { plugin => tcp_connect }\n}\n"
        f"plugins => {{ simplefo => {{ r => {{ {SF}, service_types => t }} }} }}\n",
        "www DYNA simplefo!r\n",
        ("{config}:8:", "'t'", "'port'"),
    ),
    "used-bad-interval": BadConfig(
        "service_types => {\n  t => { plugin => tcp_connect, port => 80,\n  interval => 1 }\n}\n"
        f"plugins => {{ multifo => {{ r => {{ service_types => t, a => {PRIMARY} }} }} }}\n",
        "www DYNA multifo!r\n",
        ("{config}:9:", "'t'", "'interval'"),
    ),
    "simplefo-without-secondary": BadConfig(
        f"plugins => {{ simplefo => {{\n  r => {{ primary => {PRIMARY} }}\n}} }}\n",
        "",
        ("{config}:", "'r'", "'secondary'"),
    ),
    "unknown-service-type": BadConfig(
        f"plugins => {{ simplefo => {{\n  r => {{ {SF}, service_types => [ up,\n nosuch ] }}\n}} }}\n",
        "",
        ("{config}:9:", "'nosuch'"),
    ),
    "unknown-service-type-of-a-plugin": BadConfig(
        f"plugins => {{ multifo => {{\n  service_types => nosuch\n  r => [ {PRIMARY} ]\n}} }}\n",
        "",
        ("{config}:8:", "'nosuch'"),
    ),
    "dyna-unknown-resource": BadConfig(
        f"plugins => {{ simplefo => {{ r => {{ {SF} }} }} }}\n",
        "ok DYNA simplefo!r\nwww DYNA simplefo!nosuch\n",
        ("{zone}:7:", "'nosuch'"),
    ),
    "dyna-unconfigured-plugin": BadConfig("", "www DYNA multifo!r\n", ("{zone}:6:", "multifo")),
    "geoip": BadConfig(
        "plugins => { geoip => { maps => { m => { geoip2_db => x.mmdb, datacenters => [ a ] } },\n"
        "  resources => { r => { map => m, dcmap => { a => 127.0.0.1 } } } } }\n",
        "www DYNA geoip!r\n",
        ("{config}:", "geoip"),
    ),
}


def checkconf(argv: list[str], cfg: ConfigDir) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv, "-c", str(cfg.path), "checkconf"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )


OURS = [pygdnsd_python(), "-m", "pygdnsd"]


@pytest.mark.parametrize("case", sorted(BAD))
def test_checkconf_refuses_bad_monitoring_config(tmp_path: Path, case: str) -> None:
    bad = BAD[case]
    cfg = write_config(tmp_path, bad.body, bad.zone)
    ours = checkconf(OURS, cfg)
    assert ours.returncode != 0, ours.stderr
    paths = {"config": str(cfg.path / "config"), "zone": str(cfg.path / "zones" / "example.com")}
    errors = [line for line in ours.stderr.splitlines() if line.startswith(("error:", "fatal:"))]
    assert errors, ours.stderr
    for word in bad.words:
        assert word.format(**paths) in errors[-1], (word, ours.stderr)
    if REAL_GDNSD.exists():
        theirs = checkconf([str(REAL_GDNSD)], cfg)
        assert theirs.returncode != 0, f"gdnsd accepts {case}:\n{theirs.stderr}"


# gdnsd 3.8.1 checks service types' own options only once it monitors anything:
# refused beside any monitored resource (even one of type "up"), accepted without.
UNUSED = {
    "tcp-connect-without-port": "t => { plugin => tcp_connect }",
    "extmon-without-cmd": "t => { plugin => extmon }",
    "extfile-without-file": "t => { plugin => extfile }",
    "port-out-of-range": "t => { plugin => tcp_connect, port => 99999 }",
    "unknown-option": "t => { plugin => tcp_connect, port => 80, bogus => 1 }",
    "bad-ok-code": "t => { plugin => http_status, ok_codes => [ 7 ] }",
    "interval-too-short": "t => { plugin => tcp_connect, port => 80, interval => 1 }",
}


@pytest.mark.parametrize("case", sorted(UNUSED))
def test_checkconf_accepts_a_broken_service_type_only_if_nothing_is_monitored(
    tmp_path: Path, case: str
) -> None:
    static = write_config(
        tmp_path / "static",
        f"service_types => {{\n  {UNUSED[case]}\n}}\n"
        "plugins => { static => { s => 192.0.2.1 } }\n",
        "www DYNA static!s\n",
    )
    monitored = write_config(
        tmp_path / "monitored",
        f"service_types => {{\n  {UNUSED[case]}\n}}\n"
        f"plugins => {{ simplefo => {{ r => {{ {SF}, service_types => up }} }} }}\n",
        "www DYNA simplefo!r\n",
    )
    ours = checkconf(OURS, static)
    assert ours.returncode == 0, ours.stderr
    ours = checkconf(OURS, monitored)
    assert ours.returncode != 0
    assert f"{monitored.path / 'config'}:8: service type 't'" in ours.stderr
    if REAL_GDNSD.exists():
        theirs = checkconf([str(REAL_GDNSD)], static)
        assert theirs.returncode == 0, theirs.stderr
        theirs = checkconf([str(REAL_GDNSD)], monitored)
        assert theirs.returncode != 0, theirs.stderr


# -- the 500-resource initial round ----------------------------------------------

ROUND_LINE = re.compile(r"initial monitoring round: (\d+) checks in ([0-9.]+) s")
CHECK_TIMEOUT = 2
FALLBACK = "datacenters => [ d1, d2 ], dcmap => { d1 => 127.0.0.1, d2 => %static!s }"


def test_initial_round_of_500_through_the_daemon(
    tmp_path: Path, live_port: int, blackhole_port: int, daemons: Callable[..., Daemon]
) -> None:
    types, live, holes = [], [], []
    for i in range(250):
        for kind, port, names in (("live", live_port, live), ("hole", blackhole_port, holes)):
            types.append(
                f"  {kind}{i} => {{ plugin => tcp_connect, port => {port}, "
                f"timeout => {CHECK_TIMEOUT}, interval => 10 }}"
            )
            names.append(f"{kind}{i}")
    cfg = write_config(
        tmp_path,
        "service_types => {\n" + "\n".join(types) + "\n}\n"
        # metafo answers d1's address while all of its checks pass, else d2's static one.
        "plugins => {\n  static => { s => 192.0.2.10 }\n  metafo => { resources => {\n"
        f"    rlive => {{ {FALLBACK}, service_types => [ {', '.join(live)} ] }}\n"
        f"    rhole => {{ {FALLBACK}, service_types => [ {', '.join(holes)} ] }}\n"
        "  } }\n}\n",
        "live 300 DYNA metafo!rlive\nhole 300 DYNA metafo!rhole\n",
    )
    daemon = daemons(cfg, "-D")
    startup = daemon.ready_at - daemon.started_at
    match = ROUND_LINE.search(daemon.text)
    assert match, daemon.text[-2000:]
    checks, took = int(match[1]), float(match[2])
    print(f"start to '{READY_LINE}': {startup:.2f}s; initial round: {checks} checks in {took:.2f}s")
    assert checks == 500
    assert took <= CHECK_TIMEOUT + 1, f"initial round took {took:.2f}s"
    assert startup <= CHECK_TIMEOUT + 10, f"start took {startup:.2f}s"

    # The very first answers know every state: all live types up, every hole down.
    # TTLs as gdnsd 3.8.1 answers this config: UP/100 clamps to the DYNA's
    # minimum (300/2); d1 DOWN/200 (up_thresh x interval) caps the fallback's.
    assert ask(cfg.dns_port, "live.example.com") == Answer(RCODE.NOERROR, ("127.0.0.1",), 150)
    assert ask(cfg.dns_port, "hole.example.com") == Answer(RCODE.NOERROR, ("192.0.2.10",), 200)
    rows = _state_rows(states(cfg, "ours"))
    assert len([name for name in rows if name.startswith("127.0.0.1/")]) == 500
    assert all(rows[f"127.0.0.1/{name}"]["state"] == "UP" for name in live)
    assert all(rows[f"127.0.0.1/{name}"]["state"] == "DOWN" for name in holes)
