"""The options of the HTTP status listener: ``http_listen``, ``http_allow`` and gdnsd 2's limits.

gdnsd 3.8.1 accepts these gdnsd 2 names with a warning and ignores them;
pygdnsd gives them their gdnsd 2 meaning again (``tests/data/config/ok/http_listen.conf``
checks both daemons accept the same file).
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import pygdnsd_python
from daemon_support import env
from pygdnsd.config.options import Config, HttpAddress, load_config
from pygdnsd.errors import ConfigError


def load(tmp_path: Path, options: str) -> Config:
    (tmp_path / "config").write_text(f"options => {{ listen => 127.0.0.1\n{options}\n}}\n")
    return load_config(tmp_path)


def error(tmp_path: Path, options: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, options)
    return str(info.value).replace(str(tmp_path), "DIR")


def test_nothing_listens_unless_asked_and_only_loopback_may_connect(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.http_listen == ()
    assert config.http_allow == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert (config.http_port, config.max_http_clients, config.http_timeout) == (3506, 128, 5)
    assert config.warnings == ()


def test_addresses_take_http_port_unless_they_name_one(tmp_path: Path) -> None:
    config = load(tmp_path, 'http_port => 8053, http_listen => [ 127.0.0.1, "[::1]:9053", 127.0.0.2:80 ]')
    assert config.http_listen == (
        HttpAddress("127.0.0.1", 8053, socket.AF_INET),
        HttpAddress("::1", 9053, socket.AF_INET6),
        HttpAddress("127.0.0.2", 80, socket.AF_INET),
    )
    assert load(tmp_path, "http_listen => ::1").http_listen == (HttpAddress("::1", 3506, socket.AF_INET6),)


def test_other_ports_and_families_may_share_an_address(tmp_path: Path) -> None:
    assert len(load(tmp_path, "http_listen => [ 127.0.0.1:54, \"[::1]:53\", 127.0.0.2:53 ]").http_listen) == 3


def test_http_allow_reads_networks_and_bare_addresses(tmp_path: Path) -> None:
    config = load(tmp_path, "http_allow => [ 192.0.2.0/24, 2001:db8::/32, 198.51.100.7 ]")
    assert [str(n) for n in config.http_allow] == ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"]
    assert [str(n) for n in load(tmp_path, "http_allow => 10.0.0.0/8").http_allow] == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            "http_listen => { 127.0.0.1 => {} }",
            "DIR/config:2: option 'http_listen': an address or a list of addresses (no per-address options)",
        ),
        (
            "http_listen => [ [ 127.0.0.1 ] ]",
            "DIR/config:2: option 'http_listen': all address specs must be strings",
        ),
        (
            "http_listen => localhost",
            "DIR/config:2: could not process http_listen address spec 'localhost': "
            "Name or service not known",
        ),
        ("http_listen => [ 127.0.0.1, 127.0.0.1:3506 ]", "DIR/config:2: option 'http_listen': an address is listed twice"),
        ("http_listen => 127.0.0.1:0", "DIR/config:2: could not process http_listen address spec '127.0.0.1:0': port 0"),
        (
            "http_allow => 192.0.2.1/24",
            "DIR/config:2: option 'http_allow': '192.0.2.1/24' is not a network: 192.0.2.1/24 has host bits set",
        ),
        ("http_allow => [ {} ]", "DIR/config:2: option 'http_allow': all networks must be strings"),
        ("http_timeout => 2", "DIR/config:2: option 'http_timeout': value 2 out of range (3, 60)"),
        ("max_http_clients => 0", "DIR/config:2: option 'max_http_clients': value 0 out of range (1, 65535)"),
        ("http_port => 65536", "DIR/config:2: option 'http_port': value 65536 out of range (1, 65535)"),
        (
            "http_listen => 127.0.0.1:53",
            "DIR/config:2: option 'http_listen': 127.0.0.1:53 would share its port with the DNS listen address 127.0.0.1:53",
        ),
        (
            "tcp_control => 127.0.0.1:99, http_listen => 0.0.0.0:99",
            "DIR/config:2: option 'http_listen': 0.0.0.0:99 would share its port with the tcp_control address 127.0.0.1:99",
        ),
    ],
)
def test_mistakes_name_file_line_and_option(tmp_path: Path, options: str, message: str) -> None:
    assert error(tmp_path, options) == message


def test_without_the_client_library_http_listen_is_an_error_that_says_so() -> None:
    """Only a daemon with http_listen imports prometheus_client (100 ms): without it, it says what to install."""
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "import pygdnsd.daemon.daemon as d\n"
        "try:\n"
        "    d._status_endpoints()\n"
        "except d.GdnsdError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([pygdnsd_python(), "-c", code], capture_output=True, text=True, env=env(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "option 'http_listen': /metrics needs the Python package prometheus_client (Debian: python3-prometheus-client)" in result.stdout
