"""ACME DNS-01 challenges end to end: gdnsdctl (ours and Debian's) against pygdnsd daemons.

Challenges must be answered by every process that answers queries (worker
processes too), leave every one of them when flushed or expired, come
through a ``tcp_control`` listener only where ``chal_ok`` says so, and
survive a replace with what is left of their lifetime.

Every daemon is found by its pidfile or command line and killed by PID at
teardown (the ``site`` fixture); everything listens on loopback, free ports.
Queries each come from a fresh socket, so from many source ports: the kernel
spreads them over a port's SO_REUSEPORT sockets, and so over every process
(40 queries all missing one of two processes has odds of 2**-39).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSRecord

from conftest import REAL_GDNSDCTL, free_port, pygdnsd_python
from daemon_support import Site, alive, daemonize, env, query, wait_for
from pygdnsd import instance
from pygdnsd.control.client import ControlClient, ControlError
from pygdnsd.control.protocol import ChallengeBatch, parse_acme_challenge
from pygdnsd.daemon.challenges import LiveChallenges
from pygdnsd.replace.takeover import TakeoverClient
from test_tcp_control_daemon import tcp_control

P = "0123456789012345678901234567890123456789012"
Q = "-123456789012345678901234567890123456789012"
R = "_123456789012345678901234567890123456789012"
NAME = "acme.example.com"
QNAME = f"_acme-challenge.{NAME}"
SOURCES = 40
NOERROR, NXDOMAIN = 0, 3


def two_processes(site: Site, extra: str = "") -> Site:
    """The site's config with udp_threads/tcp_threads 2: the instance and one worker process."""
    site.write(extra)
    config = site.cfgdir / "config"
    text = config.read_text().replace("udp_threads => 1", "udp_threads => 2").replace("tcp_threads => 1", "tcp_threads => 2")
    config.write_text(text)
    return site


def our_gdnsdctl(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-c", str(site.cfgdir), "-t", "60", *args],
        capture_output=True, text=True, env=env(), timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


def debian_gdnsdctl(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's gdnsdctl when installed (the reference client), else ours."""
    if not REAL_GDNSDCTL.exists():
        return our_gdnsdctl(site, *args)
    return subprocess.run(
        [str(REAL_GDNSDCTL), "-c", str(site.cfgdir), "-t", "60", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr


def txt(port: int, name: str = QNAME, tcp: bool = False) -> tuple[int, list[str]]:
    """rcode and TXT strings of the answer to ``name`` TXT."""
    reply = DNSRecord.parse(query(port, name, QTYPE.TXT, tcp=tcp))
    strings = [b"".join(rr.rdata.data).decode() for rr in reply.rr if rr.rtype == QTYPE.TXT]
    return reply.header.rcode, sorted(strings)


def every_answer(port: int, name: str = QNAME) -> set[tuple[int, tuple[str, ...]]]:
    """The distinct answers to SOURCES queries from as many source ports (UDP), and one over TCP."""
    seen = set()
    for i in range(SOURCES + 1):
        rcode, strings = txt(port, name, tcp=i == SOURCES)
        seen.add((rcode, tuple(strings)))
    return seen


def test_challenges_reach_every_process_and_a_flush_takes_them_from_all(site: Site) -> None:
    two_processes(site)
    daemonize(site)
    assert every_answer(site.port) == {(NXDOMAIN, ())}  # and cached so, everywhere
    assert ok(debian_gdnsdctl(site, "acme-dns-01", NAME, P)) == "info: ACME DNS-01 challenges accepted\n"
    assert every_answer(site.port) == {(NOERROR, (P,))}
    ok(our_gdnsdctl(site, "acme-dns-01", f"_acme-challenge.{NAME.upper()}", Q, "other.example.com", P))
    assert every_answer(site.port) == {(NOERROR, (Q, P))}
    assert every_answer(site.port, "_acme-challenge.other.example.com") == {(NOERROR, (P,))}
    assert ok(our_gdnsdctl(site, "acme-dns-01-flush")) == "info: ACME DNS-01 challenges flushed\n"
    assert every_answer(site.port) == {(NXDOMAIN, ())}
    assert every_answer(site.port, "_acme-challenge.other.example.com") == {(NXDOMAIN, ())}


def test_a_reload_keeps_the_challenges(site: Site) -> None:
    two_processes(site)
    daemonize(site)
    ok(our_gdnsdctl(site, "acme-dns-01", NAME, P))
    site.write(www="192.0.2.99")
    two_processes(site)
    ok(our_gdnsdctl(site, "reload-zones"))
    assert every_answer(site.port) == {(NOERROR, (P,))}


def test_challenges_come_through_a_tcp_control_listener_only_with_chal_ok(site: Site) -> None:
    ro, chal = free_port(), free_port()
    site.write(tcp_control(ro=(ro, ""), chal=(chal, "chal_ok => true")))
    daemonize(site)
    refused = our_gdnsdctl(site, "-s", f"127.0.0.1:{ro}", "acme-dns-01", NAME, P)
    assert refused.returncode == 42 and "acme-dns-01 command failed" in refused.stderr, refused.stderr
    assert txt(site.port) == (NXDOMAIN, [])
    ok(debian_gdnsdctl(site, "-s", f"127.0.0.1:{chal}", "acme-dns-01", NAME, P))
    assert txt(site.port) == (NOERROR, [P])
    assert our_gdnsdctl(site, "-s", f"127.0.0.1:{ro}", "acme-dns-01-flush").returncode == 42
    assert txt(site.port) == (NOERROR, [P])
    ok(our_gdnsdctl(site, "-s", f"127.0.0.1:{chal}", "acme-dns-01-flush"))
    assert txt(site.port) == (NXDOMAIN, [])
    # chal_ok is not ctl_ok.
    assert our_gdnsdctl(site, "-s", f"127.0.0.1:{chal}", "reload-zones").returncode != 0


def handed_over(site: Site) -> list[ChallengeBatch]:
    """What the daemon would hand a replacement (REQ_TAK2), asked as one would; then it carries on."""
    stand_in = subprocess.Popen(["sleep", "60"])  # a PID to announce: no daemon of ours
    try:
        client = TakeoverClient.connect(str(site.run_dir / "control.sock"), stand_in.pid, step_timeout=10)
        try:
            client.info()
            client.announce()
            return client.challenges()
        finally:
            client.close()  # before REQ_TAKE: the daemon resumes as it was
    finally:
        stand_in.kill()
        stand_in.wait()


def test_a_replace_carries_the_challenges_over_with_what_is_left_of_their_lifetime(site: Site) -> None:
    two_processes(site, "  acme_challenge_ttl => 60\n")
    old = daemonize(site)
    added = time.monotonic()
    ok(our_gdnsdctl(site, "acme-dns-01", NAME, P))
    ok(our_gdnsdctl(site, "acme-dns-01", NAME, Q, "other.example.com", P))
    time.sleep(2.0)  # so that a lifetime started afresh by the new daemon would show
    assert "SUCCESS" in ok(our_gdnsdctl(site, "replace"))
    new = int(site.pidfile.read_text())
    assert new != old and wait_for(lambda: not alive(old), 10.0)
    assert every_answer(site.port) == {(NOERROR, (Q, P))}
    batches = handed_over(site)
    elapsed = time.monotonic() - added
    assert [[(c.name, c.payload.decode()) for c in batch.challenges] for batch in batches] == [
        [(parse_acme_challenge(NAME, P).name, P)],
        [(parse_acme_challenge(NAME, Q).name, Q), (parse_acme_challenge("other.example.com", P).name, P)],
    ]
    for batch in batches:
        assert 60 - elapsed - 3 <= batch.remaining <= 60 - int(elapsed), (batch.remaining, elapsed)
    # The probe ended before REQ_TAKE: the daemon carries on, challenges and all, and takes more.
    assert ok(our_gdnsdctl(site, "status"))
    assert every_answer(site.port) == {(NOERROR, (Q, P))}
    ok(our_gdnsdctl(site, "acme-dns-01", NAME, R))
    assert every_answer(site.port) == {(NOERROR, tuple(sorted((Q, P, R))))}


def test_challenges_added_all_through_replaces_all_reach_the_last_daemon(site: Site) -> None:
    # gdnsdctl(8): concurrent acme-dns-01 and replace commands all succeed, and the
    # end state has every challenge. A request that meets a takeover is told to
    # retry (RESP_LATR) and reaches the new daemon; none may be acknowledged and lost.
    two_processes(site)
    daemonize(site)
    path = str(site.run_dir / "control.sock")
    added: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def add_forever() -> None:
        for number in range(100_000):  # bounded; ends when told to
            if stop.is_set():
                return
            name = f"n{number}.example.com"
            try:
                with ControlClient(path, 30) as client:
                    client.acme_dns_01([parse_acme_challenge(name, P)])
            except ControlError as exc:
                failures.append(f"{name}: {exc}")
                return
            added.append(name)

    adder = threading.Thread(target=add_forever, daemon=True)
    adder.start()
    try:
        for _ in range(3):
            before = len(added)
            assert wait_for(lambda before=before: len(added) > before + 5, 30.0), failures
            assert "SUCCESS" in ok(our_gdnsdctl(site, "replace"))
        before = len(added)
        assert wait_for(lambda: len(added) > before + 5, 30.0), failures
    finally:
        stop.set()
        adder.join(60)
    assert not failures, failures
    missing = [name for name in added if txt(site.port, f"_acme-challenge.{name}") != (NOERROR, [P])]
    assert not missing, f"{len(missing)} of {len(added)} acknowledged challenges are not served: {missing[:5]}"


# -- expiry, with worker processes: an instance served in this process ------------------


@pytest.fixture
def served_instance(site: Site) -> Iterator[tuple[instance.Instance, Site]]:
    two_processes(site)
    served = instance.Instance(instance.load(site.cfgdir), secret=bytes(32))
    served.serve(served.bind())
    try:
        yield served, site
    finally:
        served.stop()
        served.close_sockets()


def test_an_expired_challenge_leaves_every_process(served_instance: tuple[instance.Instance, Site]) -> None:
    served, site = served_instance
    live = LiveChallenges(1.0, 0, served.set_challenges)
    live.start()
    try:
        assert every_answer(site.port) == {(NXDOMAIN, ())}
        live.add([parse_acme_challenge(NAME, P)])
        assert every_answer(site.port) == {(NOERROR, (P,))}
        assert wait_for(lambda: live.count == 0, 5.0)
        assert every_answer(site.port) == {(NXDOMAIN, ())}
    finally:
        live.close()


def test_config_bounds_of_the_challenge_lifetime(tmp_path: Path) -> None:
    # gdnsd's: acme_challenge_ttl 60-3600 (default 600), acme_challenge_dns_ttl 0-3600 (default 0).
    for option, value in (("acme_challenge_ttl", 59), ("acme_challenge_ttl", 3601), ("acme_challenge_dns_ttl", 3601)):
        bad = Site(tmp_path / f"{option}{value}", free_port()).write(f"  {option} => {value}\n")
        with pytest.raises(Exception, match=option):
            instance.load(bad.cfgdir)
