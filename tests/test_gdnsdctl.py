"""Our gdnsdctl against Debian's real gdnsd, side by side with Debian's gdnsdctl."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REAL_GDNSD, REAL_GDNSDCTL, one_zone_source, pygdnsd_python
from daemon_support import env
from pygdnsd.cli.gdnsdctl import run_dir_from_config
from pygdnsd.config.vscf import parse_bytes
from pygdnsd.log import NO_LOG_DAEMON_ENV

needs_gdnsd = pytest.mark.skipif(
    not (REAL_GDNSD.exists() and REAL_GDNSDCTL.exists()), reason="needs Debian's gdnsd 3.8.1"
)

ZONE = """$TTL 3600
@ SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
ns1 A 192.0.2.1
www A 192.0.2.2
"""


def our_gdnsdctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        check=False,
    )


def said(cfg: str, *args: str) -> str:
    """What our ``gdnsdctl -c CFG ARGS`` wrote to stderr; it must have succeeded."""
    done = our_gdnsdctl("-c", cfg, *args)
    assert done.returncode == 0, done.stderr
    return done.stderr


def debian_gdnsdctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REAL_GDNSDCTL), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    return one_zone_source(tmp_path / "src", ZONE)


@pytest.fixture
def daemon(server_factory: Callable[[str, Path], object], source_dir: Path) -> object:
    return server_factory("gdnsd", source_dir)


def config_dir_of(daemon: object) -> str:
    config_dir = daemon.config_dir  # type: ignore[attr-defined]
    assert config_dir is not None
    return str(config_dir)


@needs_gdnsd
def test_status_reports_version_and_pid_like_debian(daemon: object) -> None:
    cfg = config_dir_of(daemon)
    ours = our_gdnsdctl("-c", cfg, "status")
    theirs = debian_gdnsdctl("-c", cfg, "status")
    pid = daemon.proc.pid  # type: ignore[attr-defined]
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stderr == theirs.stderr == f"info: version 3.8.1 running at PID {pid}\n"
    assert ours.stdout == ""


@needs_gdnsd
@pytest.mark.parametrize("action", ["stats", "states"])
def test_json_dumps_match_debian(daemon: object, action: str) -> None:
    cfg = config_dir_of(daemon)
    ours = our_gdnsdctl("-c", cfg, action)
    theirs = debian_gdnsdctl("-c", cfg, action)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stderr == theirs.stderr == ""
    ours_json, theirs_json = json.loads(ours.stdout), json.loads(theirs.stdout)
    if action == "stats":
        # uptime may tick between the two runs; everything else is byte-for-byte text.
        ours_json.pop("uptime")
        theirs_json.pop("uptime")
        assert ours.stdout.endswith("}\n")
    assert ours_json == theirs_json


@needs_gdnsd
def test_reload_zones_and_a_broken_zone(daemon: object) -> None:
    cfg = config_dir_of(daemon)
    assert said(cfg, "reload-zones") == "info: Zone data reloaded\n"
    with open(Path(cfg) / "zones" / "example.com", "a") as zone:
        zone.write("this is not a record\n")
    ours = our_gdnsdctl("-c", cfg, "reload-zones")
    theirs = debian_gdnsdctl("-c", cfg, "reload-zones")
    assert ours.returncode == theirs.returncode == 42
    assert ours.stderr == theirs.stderr == "fatal: Reload transaction failed\n"


@needs_gdnsd
def test_acme_add_and_flush(daemon: object) -> None:
    cfg = config_dir_of(daemon)
    payload = "0123456789012345678901234567890123456789012"
    assert said(cfg, "acme-dns-01", "www.example.com", payload) == "info: ACME DNS-01 challenges accepted\n"
    assert said(cfg, "acme-dns-01-flush") == "info: ACME DNS-01 challenges flushed\n"
    # Actions ignore case, as gdnsdctl's do.
    assert said(cfg, "ACME-DNS-01", "www.example.com", payload) == "info: ACME DNS-01 challenges accepted\n"
    assert said(cfg, "Acme-Dns-01-Flush") == "info: ACME DNS-01 challenges flushed\n"


@needs_gdnsd
def test_stop_returns_after_the_daemon_exited(daemon: object) -> None:
    cfg = config_dir_of(daemon)
    assert said(cfg, "stop") == "info: Stop command successful, daemon exited\n"
    # gdnsdctl returned only after the EOF, so the process is gone (or going).
    assert daemon.proc.wait(timeout=10) == 0  # type: ignore[attr-defined]
    again = our_gdnsdctl("-c", cfg, "status")
    assert again.returncode == 1
    assert "connect() to socket" in again.stderr
    idempotent = our_gdnsdctl("-c", cfg, "-i", "stop")
    assert idempotent.returncode == 0
    assert idempotent.stderr.endswith("info: No running daemon, succeeding\n")


# --- without a daemon ---------------------------------------------------------


@pytest.fixture
def dead_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "etc"
    cfg.mkdir()
    (cfg / "config").write_text(f"options => {{ run_dir => {tmp_path / 'run'} }}\n")
    return cfg


@pytest.mark.parametrize(
    ("args", "code", "last_line"),
    [
        (["status"], 1, None),
        (["-i", "status"], 1, None),
        (["stop"], 1, None),
        (["-i", "stop"], 0, "info: No running daemon, succeeding"),
        (["-i", "reload-zones"], 0, "info: No running daemon, succeeding"),
        (["-i", "replace"], 0, "info: No running daemon, succeeding"),
        (["-i", "acme-dns-01-flush"], 0, "info: No running daemon, succeeding"),
    ],
)
def test_no_daemon_exit_codes_match_debian(
    dead_config: Path, args: list[str], code: int, last_line: str | None
) -> None:
    ours = our_gdnsdctl("-c", str(dead_config), *args)
    sock = dead_config.parent / "run" / "control.sock"
    first = f"error: connect() to socket {sock} failed: No such file or directory"
    expected = first + "\n" + (last_line + "\n" if last_line else "")
    assert ours.returncode == code
    assert ours.stderr == expected
    if REAL_GDNSDCTL.exists():
        theirs = debian_gdnsdctl("-c", str(dead_config), *args)
        assert (theirs.returncode, theirs.stderr) == (ours.returncode, ours.stderr)


@pytest.mark.parametrize(
    "args", [[], ["-t", "4", "status"], ["-t", "301", "status"], ["-x", "status"]]
)
def test_bad_options_print_usage_and_exit_2(dead_config: Path, args: list[str]) -> None:
    ours = our_gdnsdctl("-c", str(dead_config), *args)
    assert ours.returncode == 2
    assert "Usage: gdnsdctl [-c /etc/gdnsd]" in ours.stderr
    if REAL_GDNSDCTL.exists():
        assert debian_gdnsdctl("-c", str(dead_config), *args).returncode == 2


def test_with_l_and_no_syslog_listening_the_lines_stay_on_stderr(dead_config: Path) -> None:
    done = subprocess.run(
        [pygdnsd_python(), "-m", "pygdnsd.cli.gdnsdctl", "-l", "-c", str(dead_config), "status"],
        capture_output=True, text=True, timeout=60, check=False, env={**env(), NO_LOG_DAEMON_ENV: "1"},
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: connect() to socket ")


def test_help_prints_usage_on_stdout_and_exits_0() -> None:
    ours = our_gdnsdctl("--help")
    assert (ours.returncode, ours.stderr) == (0, "")
    assert "\nUsage: gdnsdctl [-c /etc/gdnsd] [-s <IP:port>] [-D] [-l] [-t 47] [-o] [-i] <action> [...]\n" in ours.stdout
    assert "  -t - Timeout in seconds (def 47, range 5 - 300)\n" in ours.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["bogus"], 1),
        (["-i", "bogus"], 1),
        (["status", "extra"], 1),
        (["-i", "acme-dns-01-flush", "extra"], 0),
        (["acme-dns-01", "example.com"], 1),
    ],
)
def test_actions_are_checked_only_once_connected(
    dead_config: Path, args: list[str], code: int
) -> None:
    # Like Debian's: with no daemon, the connection failure is what gets reported.
    ours = our_gdnsdctl("-c", str(dead_config), *args)
    assert ours.returncode == code
    assert ours.stderr.startswith("error: connect() to socket ")
    if REAL_GDNSDCTL.exists():
        theirs = debian_gdnsdctl("-c", str(dead_config), *args)
        assert (theirs.returncode, theirs.stderr) == (ours.returncode, ours.stderr)


@needs_gdnsd
@pytest.mark.parametrize(
    "args", [["bogus"], ["status", "extra"], ["acme-dns-01"], ["acme-dns-01", "example.com"]]
)
def test_bad_actions_print_usage_once_connected(daemon: object, args: list[str]) -> None:
    ours = our_gdnsdctl("-c", config_dir_of(daemon), *args)
    assert ours.returncode == 2
    assert "Usage: gdnsdctl [-c /etc/gdnsd]" in ours.stderr


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("ex..com", "0" * 43, "fatal: Could not parse domainname 'ex..com'\n"),
        ("_acme-challenge.ex..com", "0" * 43, "fatal: Could not parse domainname 'ex..com'\n"),
        ("example.com", "short", "fatal: Payload for 'example.com' is not 43 bytes long\n"),
        ("example.com", "0" * 42 + "=", "fatal: Payload for 'example.com' has illegal base64url bytes\n"),
        ("a" * 63 + ".b" * 88, "0" * 43, f"fatal: Domainname '{'a' * 63 + '.b' * 88}' is too long for ACME DNS-01 challenges\n"),
    ],
)
@needs_gdnsd
def test_bad_acme_arguments_are_fatal(
    daemon: object, name: str, payload: str, message: str
) -> None:
    ours = our_gdnsdctl("-c", config_dir_of(daemon), "acme-dns-01", name, payload)
    assert (ours.returncode, ours.stderr) == (42, message)
    theirs = debian_gdnsdctl("-c", config_dir_of(daemon), "acme-dns-01", name, payload)
    assert (theirs.returncode, theirs.stderr) == (42, message)


def test_missing_config_falls_back_to_default_run_dir(tmp_path: Path) -> None:
    ours = our_gdnsdctl("-c", str(tmp_path / "nonexistent"), "status")
    assert ours.returncode == 1
    assert ours.stderr.startswith(
        f"warning: No config file at '{tmp_path / 'nonexistent' / 'config'}', using defaults\n"
        "error: connect() to socket /run/gdnsd/control.sock failed: "
    )


def test_debug_flag_names_the_config_file(dead_config: Path) -> None:
    ours = our_gdnsdctl("-D", "-c", str(dead_config), "status")
    assert ours.stderr.startswith(f"debug: Loading configuration from '{dead_config / 'config'}'\n")


@pytest.mark.parametrize(
    ("text", "run_dir"),
    [
        ("", None),
        ("options => { run_dir => /x/run }", "/x/run"),
        ('options = {\n  # run_dir => /no\n  "run_dir" => "/a b/run" ; comment\n}', "/a b/run"),
        ("options => { run_dir => [ /x ] }", None),
        ("plugins => { p => { run_dir => /no } }\noptions => { listen => [ 1.2.3.4 ] }", None),
        ("options => { x => { run_dir => /nested } }", None),
    ],
)
def test_run_dir_from_config(text: str, run_dir: str | None) -> None:
    assert run_dir_from_config(parse_bytes((text + "\n").encode())) == run_dir


def test_unparseable_config_is_fatal_but_unknown_options_are_not(tmp_path: Path) -> None:
    cfg = tmp_path / "etc"
    cfg.mkdir()
    (cfg / "config").write_text(f"options => {{ run_dir => {tmp_path}/run, bogus_opt => 1 }}\n")
    unknown = our_gdnsdctl("-c", str(cfg), "status")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(f"error: connect() to socket {tmp_path}/run/control.sock")
    (cfg / "config").write_text("options => { run_dir => \n")
    broken = our_gdnsdctl("-c", str(cfg), "status")
    assert broken.returncode == 42
    assert broken.stderr.endswith(f"fatal: Loading configuration from '{cfg}/config' failed\n")
