"""Socket activation: LISTEN_FDS/LISTEN_FDNAMES parsing, matching to the config, the daemon using them.

Real sockets are passed at fds 3.. to a child process through bash (which can
move fds to fixed numbers and give LISTEN_PID the PID that then execs), as
systemd does. Every socket is on loopback; every daemon is killed by PID.
"""

from __future__ import annotations

import fcntl
import json
import socket
import subprocess
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from conftest import free_port, pygdnsd_python
from daemon_support import (
    Site,
    a_records,
    env,
    gdnsd,
    kill_all,
    pids_serving,
    query,
    wait_for,
    zone_text,
)
from pygdnsd.config.options import ListenAddress
from pygdnsd.systemd import socket_activation
from pygdnsd.systemd.socket_activation import ActivationError, PassedSocket
from pygdnsd.transport.listeners import TCP, UDP, SocketSpec

CONTROL_PATH = "/nonexistent/control.sock"


def udp_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    # No SO_REUSEPORT: a daemon binding this address itself would fail with EADDRINUSE,
    # as it does next to root-created sockets under systemd.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    return sock


def tcp_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, port))
    sock.listen(16)
    return sock


@pytest.fixture
def closing() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def passed(label: str, sock: socket.socket, fd: int = 3) -> PassedSocket:
    return PassedSocket(fd, label, sock)


# --- passed_sockets: the environment -------------------------------------------------


def test_no_listen_variables_means_no_activation() -> None:
    assert socket_activation.passed_sockets({}, pid=1234) == []


def test_variables_for_another_pid_are_ignored_and_removed() -> None:
    environ = {"LISTEN_PID": "999", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "dns-udp:dns-tcp", "OTHER": "x"}
    assert socket_activation.passed_sockets(environ, pid=1234) == []
    assert environ == {"OTHER": "x"}


def test_a_name_count_that_disagrees_with_listen_fds_is_refused() -> None:
    environ = {"LISTEN_PID": "1234", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "dns-udp"}
    with pytest.raises(ActivationError, match="LISTEN_FDS is 2 but LISTEN_FDNAMES has 1 names"):
        socket_activation.passed_sockets(environ, pid=1234)


def bash_activated(sockets: Sequence[socket.socket], names: Sequence[str], argv: Sequence[str]) -> list[str]:
    """argv run with ``sockets`` at fds 3.. and LISTEN_* set as systemd sets them."""
    moves = " ".join(f"{3 + i}<&{sock.fileno()}" for i, sock in enumerate(sockets))
    script = (
        f"exec {moves}; export LISTEN_PID=$$ LISTEN_FDS={len(sockets)} "
        f"LISTEN_FDNAMES={':'.join(names)}; exec \"$@\""
    )
    return ["bash", "-c", script, "activated", *argv]


def high_fds(sockets: Sequence[socket.socket], closing: list[socket.socket]) -> list[socket.socket]:
    """Copies at fds >= 100, so moving them to 3.. never overwrites one not yet moved."""
    out = []
    for sock in sockets:
        copy = socket.socket(fileno=fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100))
        closing.append(copy)
        out.append(copy)
    return out


CHILD = textwrap.dedent(
    """
    import json, os
    from pygdnsd.systemd import socket_activation
    found = socket_activation.passed_sockets()
    print(json.dumps({
        "passed": [[p.fd, p.label, p.sock.type, list(p.sock.getsockname())[:2], os.get_inheritable(p.fd)]
                   for p in found],
        "env_left": [n for n in socket_activation.ENV_NAMES if n in os.environ],
    }))
    """
)


def test_passed_sockets_are_read_from_fd_3_on_with_their_labels(closing: list[socket.socket]) -> None:
    port = free_port()
    udp, tcp = udp_socket(port), tcp_socket(port)
    closing += [udp, tcp]
    argv = bash_activated(high_fds([udp, tcp], closing), ["dns-udp", "dns-tcp"], [pygdnsd_python(), "-c", CHILD])
    copies = [s.fileno() for s in closing[2:]]
    result = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=30, check=False,
                            pass_fds=copies)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["passed"] == [
        [3, "dns-udp", int(socket.SOCK_DGRAM), ["127.0.0.1", port], False],
        [4, "dns-tcp", int(socket.SOCK_STREAM), ["127.0.0.1", port], False],
    ]
    assert out["env_left"] == []


# --- match: passed sockets to configured addresses ------------------------------------


def test_sockets_match_configured_addresses_by_their_bound_address(closing: list[socket.socket]) -> None:
    port = free_port()
    udp, tcp = udp_socket(port), tcp_socket(port)
    closing += [udp, tcp]
    endpoint = ListenAddress("127.0.0.1", port, udp_threads=3, tcp_threads=2)
    other = ListenAddress("127.0.0.1", free_port())
    got = socket_activation.match([passed("dns-udp", udp), passed("dns-tcp", tcp, 4)], [other, endpoint], CONTROL_PATH)
    assert [s.spec for s in got.dns] == [
        SocketSpec("127.0.0.1", port, socket.AF_INET, UDP, 0),
        SocketSpec("127.0.0.1", port, socket.AF_INET, TCP, 0),
    ]
    assert got.dns[0].sock is udp and got.dns[1].sock is tcp
    assert got.counts == {("127.0.0.1", port, UDP): 1, ("127.0.0.1", port, TCP): 1}
    assert got.control is None
    assert udp.getblocking() is False


def test_the_label_dns_takes_the_kind_from_the_socket_type(closing: list[socket.socket]) -> None:
    port = free_port()
    udp, tcp = udp_socket(port), tcp_socket(port)
    closing += [udp, tcp]
    got = socket_activation.match([passed("dns", tcp), passed("dns", udp, 4)], [ListenAddress("127.0.0.1", port)], CONTROL_PATH)
    assert [(s.spec.kind, s.sock) for s in got.dns] == [(TCP, tcp), (UDP, udp)]
    assert socket_activation.describe(got)[0].endswith("on the socket systemd passed (dns #0)")


def test_an_ipv6_socket_matches_the_configured_spelling(closing: list[socket.socket]) -> None:
    port = free_port("::1")
    udp = udp_socket(port, "::1")
    closing.append(udp)
    got = socket_activation.match([passed("dns-udp", udp)], [ListenAddress("0:0::1", port)], CONTROL_PATH)
    assert got.dns[0].spec == SocketSpec("0:0::1", port, socket.AF_INET6, UDP, 0)


def test_the_same_address_passed_twice_gives_two_thread_sockets(closing: list[socket.socket]) -> None:
    port = free_port()
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing += [first, second]
    for sock in (first, second):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
    got = socket_activation.match([passed("dns-udp", first), passed("dns-udp", second, 4)],
                           [ListenAddress("127.0.0.1", port)], CONTROL_PATH)
    assert [s.spec.index for s in got.dns] == [0, 1]


def test_an_unconfigured_address_is_refused_and_every_socket_closed(closing: list[socket.socket]) -> None:
    port = free_port()
    udp, tcp = udp_socket(port), tcp_socket(port)
    closing += [udp, tcp]
    with pytest.raises(ActivationError, match=rf"TCP socket 127.0.0.1:{port} \(dns-tcp\) is not a configured"):
        socket_activation.match([passed("dns-tcp", tcp), passed("dns-udp", udp, 4)],
                         [ListenAddress("127.0.0.1", port + 1)], CONTROL_PATH)
    assert udp.fileno() == -1 and tcp.fileno() == -1


def test_a_label_on_the_wrong_socket_type_is_refused(closing: list[socket.socket]) -> None:
    port = free_port()
    udp = udp_socket(port)
    closing.append(udp)
    with pytest.raises(ActivationError, match="fd 3 labelled 'dns-tcp' is not an IP stream socket"):
        socket_activation.match([passed("dns-tcp", udp)], [ListenAddress("127.0.0.1", port)], CONTROL_PATH)


def test_an_unknown_label_is_refused(closing: list[socket.socket]) -> None:
    udp = udp_socket(free_port())
    closing.append(udp)
    with pytest.raises(ActivationError, match="unknown label 'dns-sctp'"):
        socket_activation.match([passed("dns-sctp", udp)], [], CONTROL_PATH)


def test_the_control_socket_is_taken_when_its_path_is_the_configured_one(
    tmp_path: Path, closing: list[socket.socket]
) -> None:
    path = str(tmp_path / "control.sock")
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    closing.append(control)
    control.bind(path)
    control.listen(4)
    assert socket_activation.match([passed("control", control)], [], path).control is control
    with pytest.raises(ActivationError, match="the 'control' socket is"):
        socket_activation.match([passed("control", control)], [], str(tmp_path / "other.sock"))


def test_activated_addresses_keep_only_their_passed_sockets() -> None:
    wanted = [SocketSpec("127.0.0.1", 53, socket.AF_INET, kind, i) for kind in (UDP, TCP) for i in range(3)]
    kept = socket_activation.keep_for({("127.0.0.1", 53, UDP): 1}, wanted)
    assert [(s.kind, s.index) for s in kept] == [(UDP, 0), (TCP, 0), (TCP, 1), (TCP, 2)]


def test_counts_survive_the_handoff_metadata_and_junk_is_none() -> None:
    counts = {("127.0.0.1", 53, UDP): 2, ("::1", 53, TCP): 1}
    decoded = json.loads(json.dumps(socket_activation.counts_to_handoff(counts)))
    assert socket_activation.counts_from_handoff(decoded) == counts
    assert socket_activation.counts_from_handoff(None) == {}
    assert socket_activation.counts_from_handoff([["127.0.0.1", 53, "sctp", 1], "x"]) == {}


# --- the daemon on passed sockets -------------------------------------------------------


def write_config(site: Site, passed_port: int, fresh_port: int) -> None:
    (site.cfgdir / "zones").mkdir(parents=True, exist_ok=True)
    (site.cfgdir / "config").write_text(
        "options => {\n"
        f"  listen => [ 127.0.0.1:{passed_port}, 127.0.0.1:{fresh_port} ]\n"
        f"  run_dir => {site.run_dir}\n"
        f"  state_dir => {site.root / 'state'}\n"
        "  udp_threads => 2\n"
        "  tcp_threads => 2\n"
        "}\n"
    )
    site.zone_file.write_text(zone_text())


@pytest.fixture
def activated_site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path / "site", free_port())
    yield made
    kill_all(made.cfgdir)


def test_the_daemon_serves_on_passed_sockets_binds_the_rest_and_hands_them_over(
    activated_site: Site, closing: list[socket.socket], tmp_path: Path
) -> None:
    site = activated_site
    passed_port, fresh_port = site.port, free_port()
    write_config(site, passed_port, fresh_port)
    udp, tcp = udp_socket(passed_port), tcp_socket(passed_port)
    closing += [udp, tcp]
    copies = high_fds([udp, tcp], closing)
    argv = bash_activated(copies, ["dns-udp", "dns-tcp"],
                          [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "start"])
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log_file:
        daemon = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env(),
                                  pass_fds=[s.fileno() for s in copies], stdin=subprocess.DEVNULL)
    try:
        # Our own copies go: only the daemon holds the passed sockets now.
        for sock in closing:
            sock.close()
        assert wait_for(lambda: "DNS listeners started" in log_path.read_text() or daemon.poll() is not None,
                        30.0), log_path.read_text()
        text = log_path.read_text()
        assert daemon.poll() is None, text
        assert f"socket activation: serving UDP 127.0.0.1:{passed_port} on the socket systemd passed (dns-udp #0)" in text
        assert f"socket activation: serving TCP 127.0.0.1:{passed_port} on the socket systemd passed (dns-tcp #0)" in text
        for port in (passed_port, fresh_port):
            assert a_records(query(port, "www.example.com")) == ["192.0.2.10"]
            assert a_records(query(port, "www.example.com", tcp=True)) == ["192.0.2.10"]
        # udp_threads 2 would need a second socket at the passed address, which (not
        # SO_REUSEPORT) only the passed one may hold: the replace succeeds only by
        # keeping the passed sockets alone there.
        result = gdnsd(site, "replace")
        assert result.returncode == 0, result.stderr + log_path.read_text()
        assert wait_for(lambda: daemon.poll() is not None, 10.0)
        new_pids = pids_serving(site.cfgdir)
        assert len(new_pids) == 1 and new_pids[0] != daemon.pid
        for port in (passed_port, fresh_port):
            assert a_records(query(port, "www.example.com")) == ["192.0.2.10"]
            assert a_records(query(port, "www.example.com", tcp=True)) == ["192.0.2.10"]
        # And once more: the new daemon passes the activated counts on.
        result = gdnsd(site, "replace")
        assert result.returncode == 0, result.stderr
        assert a_records(query(passed_port, "www.example.com")) == ["192.0.2.10"]
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait(timeout=10)


def test_a_passed_socket_the_config_does_not_listen_on_stops_the_start(
    activated_site: Site, closing: list[socket.socket], tmp_path: Path
) -> None:
    site = activated_site
    write_config(site, site.port, free_port())
    stray_port = free_port()
    udp = udp_socket(stray_port)
    closing.append(udp)
    copies = high_fds([udp], closing)
    argv = bash_activated(copies, ["dns-udp"], [pygdnsd_python(), "-m", "pygdnsd", "-c", str(site.cfgdir), "start"])
    result = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=60, check=False,
                            pass_fds=[s.fileno() for s in copies], stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert f"UDP socket 127.0.0.1:{stray_port} (dns-udp) is not a configured listen address" in result.stderr
