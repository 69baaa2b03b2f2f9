"""Issue 7 item 4 under systemd 252: gdnsd.socket passes the DNS sockets, reloads hand them over.

One container for the module: pygdnsd at Debian's paths, units/gdnsd.service
and units/gdnsd.socket as they are, a ``gdnsd`` user, /etc/gdnsd with one zone
listening on 127.0.0.1:53 (the container's private network) with the default
thread counts. systemd binds the sockets (as root); the daemon (as gdnsd)
serves on them by label and binds nothing at that address itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.background_load import BackgroundLoad
from container.systemd_container import REPO, SystemdContainer
from loadgen import LoadSpec

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]

SERVICE = "gdnsd.service"
SOCKET = "gdnsd.socket"
ZONE = "example.com"
CONFIG = "options => {\n  listen => [ 127.0.0.1 ]\n  dns_port => 53\n}\n"
ZONE_TEXT = (REPO / "examples" / "gdnsd" / "zones" / ZONE).read_text()
TIMEOUT = 120.0
RELOADS = 3
LOAD_SECONDS = 20.0
UDP_QPS = 2000.0
TCP_RATE = 50.0


def main_pid(container: SystemdContainer) -> int:
    return int(container.unit_properties(SERVICE, "MainPID")["MainPID"])


def dig(container: SystemdContainer, tcp: bool = False) -> str:
    return container.dig(f"www.{ZONE}", tcp=tcp)


def port_53_sockets(container: SystemdContainer) -> list[tuple[str, str]]:
    """(kind, holder PIDs) of every socket bound to port 53: ss's ``users:((...,pid=N,...))``."""
    out = container.run(["ss", "-Hlunpt", "sport = :53"], check=True).stdout
    found = []
    for line in out.splitlines():
        pids = ",".join(sorted(re.findall(r"pid=(\d+)", line)))
        found.append((line.split()[0], pids))
    return sorted(found)


@pytest.fixture(scope="module")
def activated(container_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdContainer]:
    log_dir = tmp_path_factory.mktemp("socket-activation")
    with SystemdContainer(container_rootfs, log_dir=log_dir) as container:
        container.install_gdnsd(CONFIG, {ZONE: ZONE_TEXT}, [SERVICE, SOCKET])
        container.run(["systemctl", "enable", "--now", SOCKET], check=True)
        yield container
        container.run(["systemctl", "stop", SERVICE, SOCKET], timeout=30)


def test_the_first_query_starts_the_daemon_on_the_passed_sockets(activated: SystemdContainer) -> None:
    container = activated
    assert container.unit_properties(SOCKET, "ActiveState")["ActiveState"] == "active"
    assert container.unit_properties(SERVICE, "ActiveState")["ActiveState"] == "inactive"
    # The query that starts the service waits in the socket's queue, and is answered.
    answer = container.run(["dig", "+short", "+time=30", "+tries=1", "@127.0.0.1", f"www.{ZONE}", "A"],
                           timeout=TIMEOUT)
    assert answer.stdout.strip() == "192.0.2.10", answer.stdout + answer.stderr + container.journal("-n", "40")
    assert container.unit_properties(SERVICE, "ActiveState")["ActiveState"] == "active"
    log = container.journal("-u", SERVICE, "-o", "cat")
    assert "socket activation: serving UDP 127.0.0.1:53 on the socket systemd passed (dns #0)" in log, log
    assert "socket activation: serving TCP 127.0.0.1:53 on the socket systemd passed (dns #0)" in log, log
    assert dig(container, tcp=True) == "192.0.2.10"
    pid = str(main_pid(container))
    # Exactly systemd's two sockets, held by systemd (PID 1) and the daemon: none bound by the daemon.
    assert port_53_sockets(container) == [("tcp", f"1,{pid}"), ("udp", f"1,{pid}")]


def test_reloads_under_load_hand_the_passed_sockets_over_losing_nothing(activated: SystemdContainer) -> None:
    container = activated
    pids = [main_pid(container)]
    spec = LoadSpec(qname=f"www.{ZONE}", qps=UDP_QPS, tcp_rate=TCP_RATE, duration=LOAD_SECONDS, grace=2.0)
    with BackgroundLoad(container, spec) as load:
        load.wait_until_served()
        began = time.monotonic()
        for number in range(1, RELOADS + 1):
            done = container.run(["systemctl", "reload", SERVICE], timeout=TIMEOUT)
            assert done.returncode == 0, f"reload {number}: {done.stderr}" + container.journal("-n", "40")
            state = container.unit_properties(SERVICE, "ActiveState", "ReloadResult", "MainPID")
            assert (state["ActiveState"], state["ReloadResult"]) == ("active", "success")
            assert int(state["MainPID"]) not in pids
            pids.append(int(state["MainPID"]))
            time.sleep(max(0.0, began + number * (LOAD_SECONDS - 6.0) / RELOADS - time.monotonic()))
        reloads_done = time.monotonic()
        outcome = load.wait()
    result = outcome.result
    assert reloads_done < outcome.started + LOAD_SECONDS, "the reloads outlasted the load"
    assert result.udp_sent > 0.9 * UDP_QPS * LOAD_SECONDS, result.summary()
    assert (result.udp_lost, result.udp_failed, result.tcp_failed) == (0, 0, 0), result.summary()
    # Still only systemd's sockets, now held by the last daemon.
    assert port_53_sockets(container) == [("tcp", f"1,{pids[-1]}"), ("udp", f"1,{pids[-1]}")]
    assert dig(container) == "192.0.2.10"
