"""Differential tests of the resolver plugins: pygdnsd must answer DYNA/DYNC like gdnsd 3.8.1.

``tests/data/diff/plugins-all`` uses every plugin (static, null, reflect,
simplefo, multifo, weighted, metafo); ``plugins-options`` their options
(thresholds, per-resource service types, metafo over other plugins) and
resources down from the start. The backends are this test's, on loopback:
TCP listeners on 127.0.0.2-127.0.0.5 (``tcp_connect``) and HTTP servers on
127.0.0.10-127.0.0.11 (``http_status``); 127.0.0.6-7 never listen. Both
daemons run at once against the same backends; every DYNA/DYNC name of the
zone is probed and compared with the harness's normaliser, first with every
backend up, then after the test takes 127.0.0.2 (TCP) and 127.0.0.10 (HTTP)
down and both daemons have noticed.

weighted picks at random: for its names the header, question and each
record but its rdata must agree, and every rdata must be one the config
allows (``RANDOM``).

pygdnsd is started with the final CLI (``python -m pygdnsd -c DIR start``)
once instance.py wires ``plugins.setup.build_dynamic`` in; until then with
``LAUNCHER`` below, which builds the instance the way instance.py will.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

import conftest
from conftest import REAL_GDNSD, REPO, ServerProcess
from differential.compare import REPLY_TIMEOUT, report
from differential.normalise import Normalised, describe_difference, normalise
from differential.queries import AAAA, ANY, CNAME, ECS, MX, TXT, A, Probe, opt_rr, option, query
from differential.wire import ask

DIFF = Path(__file__).resolve().parent.parent / "data" / "diff"
CONFIGS = ["plugins-all", "plugins-options"]
TCP_BACKENDS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
HTTP_BACKENDS = ("127.0.0.10", "127.0.0.11")
# What the test takes down in the second phase.
DOWN_TCP = "127.0.0.2"
DOWN_HTTP = "127.0.0.10"
# Service types poll every 2 s; the second phase waits until both daemons
# give answers that show every change (WITNESS: names -> first A rdata).
NOTICE_TIMEOUT = 30.0
# Then an interval and a margin, so both daemons have polled every resource since:
# a fixed wait, as gdnsd shows nothing (states, stats, log) for a poll that changes nothing.
SETTLE = 3.0
WITNESS = {
    "plugins-all": {"sf": "127.0.0.3", "sfweb": "127.0.0.11"},
    "plugins-options": {"sfhalf": "127.0.0.6", "sfslow": "127.0.0.3", "sfboth": "127.0.0.11"},
}
RANDOM = {
    "w": {"127.0.0.2", "127.0.0.3", "127.0.0.4"},
    "wc": {"a.example.net.", "b.example.net."},
}

WIRED = "build_dynamic" in (REPO / "service" / "pygdnsd" / "instance.py").read_text()

LAUNCHER = """
import logging, signal, sys, threading
from pathlib import Path
from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.instance import Instance, Loaded, cookie_secret, read_config
from pygdnsd.plugins.setup import build_dynamic
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.settings import ZoneSettings

logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
config = read_config(Path(sys.argv[1]))
setup = build_dynamic(config)
zones = load_zones(config.zones_dir, ZoneSettings.from_config(config), setup.resolvers)
secret = cookie_secret(config)
instance = Instance(Loaded(config, zones), secret=secret)
instance.responder = Responder(zones, EngineSettings.from_config(config, secret), instance.stats, dynamic=setup.resolvers)
setup.monitor.initial_round()
setup.monitor.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
instance.serve(instance.bind())
logging.info("DNS listeners started")
for _ in range(36000):
    if stop.wait(0.1):
        break
instance.stop()
setup.monitor.stop()
instance.close_sockets()
"""


def launcher_command(kind: str, config_dir: Path) -> list[str]:
    if kind == "pygdnsd-launcher":
        return [conftest.pygdnsd_python(), "-c", LAUNCHER, str(config_dir)]
    return ORIGINAL_COMMAND(kind, config_dir)


ORIGINAL_COMMAND = conftest.server_command
OUR_KIND = "pygdnsd" if WIRED else "pygdnsd-launcher"


# -- backends --------------------------------------------------------------


@dataclass
class TcpBackends:
    """A listener per address, all on one port; ``down`` closes one (connects get refused)."""

    port: int = 0
    listeners: dict[str, socket.socket] = field(default_factory=dict)

    def start(self) -> TcpBackends:
        for _ in range(20):
            self.port = conftest.free_port(TCP_BACKENDS[0])
            try:
                for address in TCP_BACKENDS:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.listeners[address] = sock
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((address, self.port))
                    sock.listen(64)
                return self
            except OSError:
                self.stop()
        raise RuntimeError("no port free on every backend address")

    def down(self, address: str) -> None:
        self.listeners.pop(address).close()

    def stop(self) -> None:
        for sock in self.listeners.values():
            sock.close()
        self.listeners.clear()


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        healthy = getattr(self.server, "healthy", True)
        self.send_response(200 if healthy and self.path == "/ok" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class HttpBackends:
    """An HTTP server per address, all on one port; ``down`` makes one answer 503."""

    port: int = 0
    servers: dict[str, http.server.ThreadingHTTPServer] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> HttpBackends:
        for _ in range(20):
            self.port = conftest.free_port(HTTP_BACKENDS[0])
            try:
                for address in HTTP_BACKENDS:
                    self.servers[address] = http.server.ThreadingHTTPServer((address, self.port), _Health)
                break
            except OSError:
                self.stop()
        else:
            raise RuntimeError("no port free on every HTTP backend address")
        for server in self.servers.values():
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def down(self, address: str) -> None:
        self.servers[address].healthy = False  # type: ignore[attr-defined]

    def stop(self) -> None:
        for server in self.servers.values():
            if any(t.is_alive() for t in self.threads):
                server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)
        self.servers.clear()
        self.threads.clear()


# -- probes ----------------------------------------------------------------

def zone_names(config: str) -> list[str]:
    """Every owner of the config's zone with a DYNA/DYNC or a CNAME (``*`` probed as ``wild``)."""
    out = []
    for line in (DIFF / config / "zones" / "example.com").read_text().splitlines():
        fields = line.split()
        if len(fields) < 3 or not any(t in fields for t in ("DYNA", "DYNC", "CNAME")):
            continue
        owner = "wild" if fields[0] == "*" else fields[0]
        if owner not in out:
            out.append(owner)
    return out

ECS_V4 = option(ECS, bytes((0, 1, 24, 0, 192, 0, 2)))
ECS_V6 = option(ECS, bytes((0, 2, 48, 0)) + bytes.fromhex("20010db80001"))


def fqdn(name: str) -> str:
    return name if name.endswith("example.com") else f"{name}.example.com"


# DYNCs whose resource answers a CNAME: gdnsd answers ANY there with the
# CNAME (as at a static CNAME); test_any_at_a_dync_cname covers them.
DYNC_CNAMES = ("static-cn", "wc")


def plugin_probes(config: str) -> list[Probe]:
    probes = []
    for name in zone_names(config):
        qname = fqdn(name)
        for qtype, tname in ((A, "A"), (AAAA, "AAAA"), (ANY, "ANY"), (MX, "MX"), (TXT, "TXT")):
            if qtype == ANY and name in DYNC_CNAMES:
                continue
            probes.append(Probe(f"{qname} {tname}", query(qname, qtype)))
        probes.append(Probe(f"{qname} A edns", query(qname, A, edns=opt_rr())))
        probes.append(Probe(f"{qname} A ecs4", query(qname, A, edns=opt_rr(options=ECS_V4))))
        probes.append(Probe(f"{qname} AAAA ecs6", query(qname, AAAA, edns=opt_rr(options=ECS_V6))))
        probes.append(Probe(f"{qname} A tcp", query(qname, A, edns=opt_rr()), tcp=True))
    return probes


def random_name(probe: Probe) -> str | None:
    first = probe.label.split(".", 1)[0]
    return first if first in RANDOM else None


def strip_rdata(normalised: Normalised, allowed: set[str]) -> tuple[Normalised, list[str]]:
    """``normalised`` with each answer's rdata blanked, and the rdatas not in ``allowed``."""
    kept = []
    stray = []
    for entry in normalised.answer:
        if not any(f" type={t} " in entry for t in (A, AAAA, CNAME)):
            kept.append(entry)  # e.g. the HINFO answering ANY: not random
            continue
        head, _, rdata = entry.rpartition(" ")
        kept.append(head)
        if rdata not in allowed:
            stray.append(rdata)
    return replace(normalised, answer=tuple(kept)), stray


def plugin_differences(reference: tuple[str, int], ours: tuple[str, int], probes: list[Probe]) -> list[str]:
    found = []
    for probe in probes:
        expected = normalise(ask(reference, probe.packet, probe.tcp, REPLY_TIMEOUT))
        actual = normalise(ask(ours, probe.packet, probe.tcp, REPLY_TIMEOUT))
        label = f"{probe.label} ({'tcp' if probe.tcp else 'udp'})"
        name = random_name(probe)
        if name is not None:
            expected, stray_theirs = strip_rdata(expected, RANDOM[name])
            actual, stray_ours = strip_rdata(actual, RANDOM[name])
            if stray_theirs or stray_ours:
                found.append(f"{label}: answers outside {sorted(RANDOM[name])}: "
                             f"gdnsd {stray_theirs}, pygdnsd {stray_ours}")
        diff = describe_difference(label, expected, actual)
        if diff:
            found.append(diff)
    return found


def first_answer(address: tuple[str, int], name: str) -> str:
    """The rdata of the first A record answering ``name`` ("" if none)."""
    answer = normalise(ask(address, query(fqdn(name), A), False, REPLY_TIMEOUT)).answer
    return answer[0].rpartition(" ")[2] if answer else ""


# -- the servers -----------------------------------------------------------


@dataclass
class Pair:
    config: str
    tcp: TcpBackends
    web: HttpBackends
    reference: ServerProcess
    ours: ServerProcess


def source_dir(config: str, tmp: Path, tcp: TcpBackends, web: HttpBackends) -> Path:
    """The config dir with the backend ports filled in (the other placeholders are ServerProcess's)."""
    out = tmp / "source"
    shutil.copytree(DIFF / config, out)
    config = out / "config"
    config.write_text(
        config.read_text().replace("@BACKEND_PORT@", str(tcp.port)).replace("@HTTP_PORT@", str(web.port))
    )
    (out / "cookie.key").write_bytes(bytes(range(32)))
    return out


@pytest.fixture(scope="module", params=CONFIGS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"
    config: str = request.param
    tmp = tmp_path_factory.mktemp(config)
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        patch.setattr(conftest, "server_command", launcher_command)
        tcp = TcpBackends().start()
        stack.callback(tcp.stop)
        web = HttpBackends().start()
        stack.callback(web.stop)
        source = source_dir(config, tmp, tcp, web)
        reference = stack.enter_context(ServerProcess("gdnsd", source, tmp / "gdnsd"))
        ours = stack.enter_context(ServerProcess(OUR_KIND, source, tmp / "pygdnsd"))
        yield Pair(config, tcp, web, reference, ours)


def wait_until_noticed(pair: Pair) -> None:
    """Until both daemons give the WITNESS answers of the config (bounded)."""
    deadline = time.monotonic() + NOTICE_TIMEOUT
    servers = {"gdnsd": pair.reference.address, "pygdnsd": pair.ours.address}
    expected = WITNESS[pair.config]
    while time.monotonic() < deadline:
        if all(first_answer(s, n) == a for s in servers.values() for n, a in expected.items()):
            return
        time.sleep(0.2)
    seen = {k: {n: first_answer(s, n) for n in expected} for k, s in servers.items()}
    raise AssertionError(f"within {NOTICE_TIMEOUT}s, wanted {expected} from both, got {seen}")


# -- the tests -------------------------------------------------------------


def test_probe_set_covers_every_plugin() -> None:
    zone = (DIFF / "plugins-all" / "zones" / "example.com").read_text()
    for plugin in ("static", "null", "reflect", "simplefo", "multifo", "weighted", "metafo"):
        assert f"DYNA {plugin}" in zone or f"DYNC {plugin}" in zone
    for config in CONFIGS:
        labels = {p.label.split(" ", 1)[0] for p in plugin_probes(config)}
        text = (DIFF / config / "zones" / "example.com").read_text()
        for line in text.splitlines():
            owner = line.split()[0]
            if "DYN" in line:
                assert fqdn("wild" if owner == "*" else owner) in labels, owner
        assert set(WITNESS[config]) <= set(zone_names(config))
    assert all(name in zone_names("plugins-all") for name in DYNC_CNAMES)


def test_harness_sees_a_wrong_random_answer() -> None:
    """A weighted answer outside the configured set is reported, whatever its shape."""
    good = Normalised((("rcode", 0),), ("w.example.com.",), ("w.example.com. 10 class=1 type=1 127.0.0.3",), (), ())
    bad = replace(good, answer=("w.example.com. 10 class=1 type=1 127.0.0.9",))
    assert strip_rdata(good, RANDOM["w"])[1] == []
    assert strip_rdata(bad, RANDOM["w"])[1] == ["127.0.0.9"]


def test_all_backends_up(pair: Pair) -> None:
    probes = plugin_probes(pair.config)
    found = plugin_differences(pair.reference.address, pair.ours.address, probes)
    assert not found, report(found, len(probes))


def test_any_at_a_dync_cname(pair: Pair) -> None:
    if pair.config != "plugins-all":
        return  # only plugins-all has DYNC CNAMEs
    probes = [Probe(f"{fqdn(name)} ANY", query(fqdn(name), ANY)) for name in DYNC_CNAMES]
    probes += [replace(p, tcp=True) for p in probes]
    found = plugin_differences(pair.reference.address, pair.ours.address, probes)
    assert not found, report(found, len(probes))


def test_one_backend_down(pair: Pair) -> None:
    pair.tcp.down(DOWN_TCP)
    pair.web.down(DOWN_HTTP)
    wait_until_noticed(pair)
    time.sleep(SETTLE)
    probes = plugin_probes(pair.config)
    found = plugin_differences(pair.reference.address, pair.ours.address, probes)
    assert not found, report(found, len(probes))


if __name__ == "__main__":  # pragma: no cover - manual runs
    sys.exit(pytest.main([__file__, "-v"]))
