"""Each option of the config file reaches the part that acts on it, through the typed ``Config``.

These options used to be parsed and then dropped on the way from ``Config``
to the settings objects: a test per option shows it arriving.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from conftest import free_port
from pygdnsd import instance
from pygdnsd.config.options import load_config
from pygdnsd.engine.responder import EngineSettings
from pygdnsd.engine.stats import Stats
from pygdnsd.transport.answerer import Answerer
from pygdnsd.transport.listeners import ListenSocket
from pygdnsd.transport.tcp import TcpLimits
from pygdnsd.zones.settings import ZoneSettings

SOA = "@ SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ NS ns1\nns1 A 192.0.2.1\n"


def config_dir(tmp_path: Path, options: str) -> Path:
    cfgdir = tmp_path / "cfg"
    (cfgdir / "zones").mkdir(parents=True)
    (cfgdir / "config").write_text(
        f"options => {{\n  run_dir => {tmp_path / 'run'}\n  state_dir => {tmp_path / 'state'}\n{options}\n}}\n"
    )
    return cfgdir


def counting_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fork from now on adds its child's pid to the list returned."""
    children: list[int] = []
    real_fork: Callable[[], int] = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            children.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return children


@pytest.mark.parametrize("threads", [1, 3])
def test_zones_rfc1035_threads_is_how_many_processes_read_the_zones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    cfgdir = config_dir(tmp_path, f"  listen => [127.0.0.1]\n  zones_rfc1035_threads => {threads}")
    # Enough bytes of zone files (over 1 MiB) that reading them is worth more processes.
    records = "".join(f"h{i} A 192.0.2.{i % 250 + 1}\n" for i in range(12_000))
    for n in range(6):
        (cfgdir / "zones" / f"z{n}.example").write_text(SOA + records)
    children = counting_forks(monkeypatch)
    loaded = instance.load(cfgdir)
    assert len(loaded.zones.zones) == 6
    # This process reads its share; each other process is a forked worker.
    assert len(children) == threads - 1


class RecordingTcpServer:
    """Stands in for ``TcpServer``: keeps what the instance gives it, serves nothing."""

    given: list[tuple[ListenSocket, TcpLimits]] = []

    def __init__(self, listeners: Sequence[tuple[ListenSocket, TcpLimits]], responder: Answerer, stats: Stats) -> None:
        RecordingTcpServer.given.extend(listeners)

    def start(self) -> None:
        pass

    def request_stop(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_per_address_tcp_options_reach_that_addresses_tcp_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    padded, proxied = free_port(), free_port()
    cfgdir = config_dir(
        tmp_path,
        "  udp_threads => 1\n  tcp_threads => 1\n  disable_tcp_dso => true\n  listen => {\n"
        f"    127.0.0.1:{padded} => {{ tcp_pad => true, tcp_timeout => 10 }}\n"
        f"    127.0.0.1:{proxied} => {{ tcp_proxy => true }}\n  }}",
    )
    monkeypatch.setattr(instance, "TcpServer", RecordingTcpServer)
    RecordingTcpServer.given = []
    served = instance.Instance(instance.load(cfgdir), secret=bytes(32))
    served.serve(served.bind())
    try:
        got = {listener.spec.port: limits for listener, limits in RecordingTcpServer.given}
    finally:
        served.stop()
        served.close_sockets()
    assert got == {
        padded: TcpLimits(
            idle_timeout=20.0, max_clients=256, tcp_proxy=False, tcp_pad=True, disable_tcp_dso=True, tcp_timeout=10
        ),
        # tcp_pad follows tcp_proxy unless the address sets it.
        proxied: TcpLimits(
            idle_timeout=74.0, max_clients=256, tcp_proxy=True, tcp_pad=True, disable_tcp_dso=True
        ),
    }


def test_settings_carry_every_option_they_are_made_of(tmp_path: Path) -> None:
    config = load_config(
        config_dir(
            tmp_path,
            "  listen => [127.0.0.1]\n  zones_default_ttl => 100\n  min_ttl => 1\n  max_ttl => 7200\n"
            "  max_ncache_ttl => 60\n  zones_strict_data => true\n  disable_text_autosplit => true\n"
            "  acme_challenge_dns_ttl => 30\n  zones_rfc1035_threads => 5\n  chaos_response => hi\n"
            "  nsid_ascii => me\n  max_edns_response => 1400\n  max_edns_response_v6 => 1300\n"
            "  experimental_no_chain => false\n  edns_client_subnet => false\n  disable_cookies => true\n"
            "  max_nocookie_response => 600\n  tcp_timeout => 20",
        )
    )
    assert ZoneSettings.from_config(config) == ZoneSettings(
        default_ttl=100,
        min_ttl=1,
        max_ttl=7200,
        max_ncache_ttl=60,
        strict_data=True,
        text_autosplit=False,
        acme_challenge_dns_ttl=30,
        threads=5,
    )
    assert EngineSettings.from_config(config, b"k" * 32) == EngineSettings(
        chaos_response=b"hi",
        nsid=b"me",
        max_edns_response=1400,
        max_edns_response_v6=1300,
        experimental_no_chain=False,
        edns_client_subnet=False,
        disable_cookies=True,
        max_nocookie_response=600,
        tcp_keepalive=200,
        cookie_secret=b"k" * 32,
    )


def test_settings_default_to_the_config_defaults(tmp_path: Path) -> None:
    config = load_config(config_dir(tmp_path, "  listen => [127.0.0.1]"))
    assert ZoneSettings.from_config(config) == ZoneSettings()
    assert EngineSettings.from_config(config, EngineSettings().cookie_secret) == EngineSettings()
