"""pygdnsd's ``load_config`` accepts exactly the config dirs gdnsd 3.8.1's checkconf accepts.

Cases live in tests/data/config/{ok,bad}/: a ``NAME.conf`` file becomes the
``config`` file of a fresh config dir, a ``NAME/`` dir is copied whole (for
includes). The ok/bad folder records what gdnsd did when the case was written.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, gdnsd_available
from pygdnsd.config.options import Config, load_config
from pygdnsd.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"
CASES = sorted(
    (kind, path)
    for kind in ("ok", "bad")
    for path in (DATA / kind).iterdir()
    if path.name != ".keep"
)


def make_cfgdir(case: Path, tmp_path: Path) -> Path:
    cfgdir = tmp_path / "cfg"
    if case.is_dir():
        shutil.copytree(case, cfgdir)
    else:
        cfgdir.mkdir()
        shutil.copyfile(case, cfgdir / "config")
    (cfgdir / "zones").mkdir(exist_ok=True)
    return cfgdir


def ours_accepts(cfgdir: Path) -> bool:
    try:
        load_config(cfgdir)
    except ConfigError:
        return False
    return True


def gdnsd_accepts(cfgdir: Path) -> bool:
    result = subprocess.run(
        [str(REAL_GDNSD), "-c", str(cfgdir), "checkconf"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}/{p.name}" for k, p in CASES])
def test_ours_matches_recorded_verdict(kind: str, case: Path, tmp_path: Path) -> None:
    assert ours_accepts(make_cfgdir(case, tmp_path)) == (kind == "ok")


@pytest.mark.skipif(not gdnsd_available(), reason="reference gdnsd not installed")
@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}/{p.name}" for k, p in CASES])
def test_gdnsd_gives_recorded_verdict(kind: str, case: Path, tmp_path: Path) -> None:
    assert gdnsd_accepts(make_cfgdir(case, tmp_path)) == (kind == "ok")


# -- unit checks of the values and messages -------------------------------------


def load(tmp_path: Path, text: str | None, **kwargs: bool) -> Config:
    if text is not None:
        (tmp_path / "config").write_text(text)
    return load_config(tmp_path, **kwargs)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value).replace(str(tmp_path), "DIR")


def test_absent_config_file_gives_man_page_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, None)
    assert config.cfgdir == tmp_path
    assert config.zones_dir == tmp_path / "zones"
    assert (config.zones_default_ttl, config.max_ttl, config.min_ttl, config.max_ncache_ttl) == (
        86400,
        3600000,
        5,
        10800,
    )
    assert (config.dns_port, config.tcp_threads, config.udp_threads) == (53, 2, 2)
    assert (config.tcp_clients_per_thread, config.tcp_timeout, config.tcp_backlog) == (256, 37, 0)
    assert (config.tcp_fastopen, config.udp_rcvbuf, config.udp_sndbuf) == (256, 0, 0)
    assert (config.max_edns_response, config.max_edns_response_v6) == (1232, 1232)
    assert (config.acme_challenge_ttl, config.acme_challenge_dns_ttl) == (600, 0)
    assert config.chaos_response == b"gdnsd/3" and config.nsid is None
    assert config.edns_client_subnet and config.experimental_no_chain
    assert not (config.disable_cookies or config.lock_mem or config.zones_strict_data)
    assert not (config.disable_tcp_dso or config.disable_text_autosplit or config.zones_auto_reload)
    assert config.max_nocookie_response == 0 and config.cookie_key_file is None
    assert config.zones_rfc1035_threads == 2 and config.tcp_control == ()
    assert config.run_dir == Path("/run/gdnsd") and config.state_dir == Path("/var/lib/gdnsd")
    assert config.pidfile == Path("/run/gdnsd/gdnsd.pid") and config.username is None
    assert [(a.host, a.port, a.family) for a in config.listen] == [
        ("0.0.0.0", 53, socket.AF_INET),
        ("::", 53, socket.AF_INET6),
    ]
    assert any("listen=>any" in w for w in config.warnings)


def test_listen_forms_normalise_to_addresses(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "options => { dns_port => 5300, tcp_timeout => 20, udp_threads => 3, listen => {\n"
        "  127.0.0.1 => { tcp_timeout => 15 }\n"
        '  "[::1]:53035" => { udp_rcvbuf => 8192 }\n'
        "  127.0.0.2:99 => { tcp_proxy => true }\n"
        "} }\n",
    )
    first, second, third = config.listen
    assert (first.host, first.port, first.family, first.tcp_timeout, first.udp_threads) == (
        "127.0.0.1",
        5300,
        socket.AF_INET,
        15,
        3,
    )
    assert (second.host, second.port, second.family) == ("::1", 53035, socket.AF_INET6)
    assert second.udp_rcvbuf == 8192 and second.tcp_timeout == 20 and not second.tcp_pad
    assert third.tcp_proxy and third.tcp_pad and third.port == 99
    # gdnsd.config: a PROXY address gets no UDP listeners.
    assert third.udp_threads == 0 and third.tcp_threads == first.tcp_threads
    config = load(tmp_path, "options => { listen => [ 127.0.0.1:5353, ::1, 127.1 ] }\n")
    assert [(a.host, a.port) for a in config.listen] == [
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("127.0.0.1", 53),
    ]
    assert config.warnings == ()


def test_strings_become_bytes_and_paths(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        'options => { nsid => 00ff, chaos_response => "caf\\195\\169", run_dir => /tmp/r,'
        " cookie_key_file => /k, username => nobody, zones_auto_reload => true }\n",
    )
    assert config.nsid == b"\x00\xff" and config.chaos_response == "café".encode()
    assert config.pidfile == Path("/tmp/r/gdnsd.pid") and config.cookie_key_file == Path("/k")
    assert config.username == "nobody" and config.zones_auto_reload
    assert load(tmp_path, "options => { nsid_ascii => a-b }\n").nsid == b"a-b"
    assert load(tmp_path, "options => { pidfile => /p }\n").pidfile == Path("/p")


def test_strict_data_override_and_raw_plugin_data(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "plugins => { static => { foo => 192.0.2.1 } }\nservice_types => { t => { plugin => null } }\n",
        strict_data_override=True,
    )
    assert config.zones_strict_data
    assert config.plugins == {"static": {"foo": "192.0.2.1"}}
    assert config.service_types == {"t": {"plugin": "null"}}
    assert str(config.plugins["static"].pos) == f"{tmp_path}/config:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "bar => {}\n",
            "DIR/config:1: invalid top-level config key 'bar' (allowed: options, service_types, plugins)",
        ),
        ("options => []\n", "DIR/config:1: config key 'options': wrong type (must be a hash)"),
        ("[ a ]\n", "DIR/config: the main config file cannot be an '[ array ]' at the top level"),
        ("plugins => { x => y }\n", "DIR/config:1: plugins: the value of 'x' must be a hash"),
        ("options => {\n foo => 1 }\n", "DIR/config:2: invalid options key 'foo'"),
        (
            "options => { tcp_timeout => 4 }\n",
            "DIR/config:1: option 'tcp_timeout': value 4 out of range (5, 1800)",
        ),
        (
            "options => { tcp_timeout => 1x }\n",
            "DIR/config:1: option 'tcp_timeout': value must be a positive integer",
        ),
        (
            "options => { lock_mem => 1 }\n",
            "DIR/config:1: option 'lock_mem': value must be 'true' or 'false'",
        ),
        (
            "options => { run_dir => [] }\n",
            "DIR/config:1: option 'run_dir': wrong type (should be a string)",
        ),
        (
            "options => { min_ttl => 4000, max_ttl => 3600 }\n",
            "option 'max_ttl' (3600) cannot be smaller than 'min_ttl' (4000)",
        ),
        (
            "options => { max_nocookie_response => 5 }\n",
            "DIR/config:1: option 'max_nocookie_response' (5) must be zero, or in the range 128 - 1024",
        ),
        (
            "options => { nsid => a }\n",
            "DIR/config:1: option 'nsid' must be a hex string up to 256 characters (128 encoded bytes) long",
        ),
        (
            "options => { nsid => aa, nsid_ascii => a }\n",
            "DIR/config:1: only one of 'nsid_ascii' or 'nsid' can be set",
        ),
        ("options => { listen => [] }\n", "DIR/config:1: option 'listen': no addresses given"),
        (
            "options => { listen => localhost }\n",
            "DIR/config:1: could not process listen address spec 'localhost': Name or service not known",
        ),
        (
            "options => { listen => { 127.0.0.1:99 => { tcp_proxy => true, udp_threads => 1 } } }\n",
            "DIR/config:1: invalid per-address listen option with tcp_proxy: 'udp_threads'",
        ),
        (
            "options => { tcp_control => 127.0.0.1 }\n",
            "DIR/config:1: could not process tcp_control address spec '127.0.0.1': port number required",
        ),
    ],
)
def test_option_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text) == message


def test_legacy_options_load_with_a_warning(tmp_path: Path) -> None:
    config = load(tmp_path, "options => { listen => any, zones_rfc1035_auto => true }\n")
    assert config.warnings == (
        f"{tmp_path}/config:1: config option zones_rfc1035_auto is no longer supported and is ignored",
    )
