"""The ``gdnsd`` command line: parsing, exit codes, checkconf errors, start/stop."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port, pygdnsd_python
from pygdnsd import log
from pygdnsd.cli import gdnsd
from pygdnsd.errors import ZoneError
from pygdnsd.instance import Loaded
from pygdnsd.zones.model import ZoneSet

WAIT = 10.0


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    status = gdnsd.main(argv, stderr=err)
    return status, err.getvalue()


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    yield None
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def test_parse_defaults() -> None:
    options = gdnsd.parse_args(["checkconf"])
    assert options == gdnsd.Options(cfgdir=Path("/etc/gdnsd"), action="checkconf")


def test_parse_all_flags_and_options_after_action() -> None:
    options = gdnsd.parse_args(["-D", "-l", "start", "-S", "-c", "/x/y", "-i"])
    assert options == gdnsd.Options(
        cfgdir=Path("/x/y"), action="start", debug=True, syslog=True, strict_data=True, idempotent=True
    )


def test_daemonize_implies_syslog() -> None:
    assert gdnsd.parse_args(["daemonize"]).syslog


@pytest.mark.parametrize(
    "argv",
    [[], ["bogus"], ["checkconf", "extra"], ["-R", "-i", "start"], ["-q", "start"], ["--help", "start"], ["-c"]],
)
def test_bad_usage_prints_usage_and_exits_2(argv: list[str]) -> None:
    status, err = run_main(argv)
    assert status == 2
    assert "Usage: gdnsd [-c /etc/gdnsd] [-D] [-l] [-S] [-R | -i] <action>" in err
    assert "checkconf - Checks validity of config and zone files" in err


def test_help_prints_usage_with_every_option_on_stdout_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_main(["--help"])
    out = capsys.readouterr().out
    assert (status, err) == (0, "")
    assert out.startswith("pygdnsd version ")
    synopsis = out.split("\n  -c ")[0]
    assert "Usage: gdnsd [-c /etc/gdnsd] [-D] [-l] [-S] [-R | -i] <action>\n" in synopsis
    assert "[-t 300] replace|restart|condrestart|try-restart" in synopsis
    assert "  -t - Seconds replace/restart waits" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert gdnsd.main(["--version"]) == 0
    assert "pygdnsd version" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["-R", "start"], ["daemonize"], ["replace"]])
def test_process_changing_actions_refuse_to_run_inside_a_caller(argv: list[str]) -> None:
    # They fork or take over the running daemon: main(argv) from other Python
    # code (this test) must refuse instead of turning pytest into a daemon.
    # The real verbs are covered in tests/test_daemon.py and tests/test_replace.py.
    status, err = run_main(argv)
    assert status == 1
    assert err.startswith("error: ")
    assert "not when main(argv) is called from other Python code" in err


def test_checkconf_reports_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_load(cfgdir: Path, strict_data: bool = False) -> Loaded:
        assert strict_data
        raise ZoneError("unknown record type 'BOGUS'", str(cfgdir / "zones/example.org"), 4)

    monkeypatch.setattr(gdnsd, "load", failing_load)
    status, err = run_main(["-S", "-c", "/cfg", "checkconf"])
    assert status == 1
    assert err == "error: /cfg/zones/example.org:4: unknown record type 'BOGUS'\n"


def test_checkconf_success(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []

    def fine_load(cfgdir: Path, strict_data: bool = False) -> Loaded:
        seen.append(cfgdir)
        return Loaded(config=object(), zones=ZoneSet())

    monkeypatch.setattr(gdnsd, "load", fine_load)
    assert run_main(["-c", "/cfg", "checkconf"]) == (0, "")
    assert seen == [Path("/cfg")]


def test_log_lines_look_like_gdnsd() -> None:
    out = io.StringIO()
    log.setup("stderr", debug=False, stream=out)
    logger = logging.getLogger("pygdnsd.test")
    logger.debug("hidden")
    logger.info("DNS listeners started")
    logger.warning("careful")
    logger.error("broken")
    logger.critical("dying")
    assert out.getvalue().splitlines() == [
        "info: DNS listeners started",
        "warning: careful",
        "error: broken",
        "fatal: dying",
    ]
    log.setup("stderr", debug=True, stream=out)
    logger.debug("shown")
    assert out.getvalue().splitlines()[-1] == "debug: shown"


# A ``gdnsd start`` in a child process, with the config/zone loading and the
# engine replaced by fakes (they are other modules' work): it proves the
# start sequence, the readiness line, serving, and the SIGTERM exit.
FAKE_START = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pygdnsd import instance
    from pygdnsd.config.options import Config, ListenAddress
    from pygdnsd.cli import gdnsd
    from pygdnsd.zones.model import ZoneSet

    port = int(sys.argv[1])

    class EchoResponder:
        def __init__(self, zones, settings, stats):
            self.stats = stats
        def respond(self, query, client_ip, tcp, shape=None):
            return b"ans:" + query

    def fake_load(cfgdir, strict_data=False):
        listen = (ListenAddress("127.0.0.1", port, udp_threads=1, tcp_threads=1),)
        run_dir = Path(sys.argv[2])
        config = Config(Path(cfgdir), listen, run_dir=run_dir, pidfile=run_dir / "gdnsd.pid", tcp_timeout=5)
        return instance.Loaded(config, ZoneSet())

    gdnsd.load = fake_load
    instance.Responder = EchoResponder
    raise SystemExit(gdnsd.main(["-c", "/nonexistent", "start"]))
    """
)


def wait_for_line(proc: subprocess.Popen[str], line: str) -> list[str]:
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = proc.stderr.readline()
        if not text:
            break
        seen.append(text)
        if line in text:
            return seen
    raise AssertionError(f"no {line!r} in {seen}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_start_serves_and_exits_0_on_signal(tmp_path: Path, signum: int) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "service"))
    proc = subprocess.Popen(
        [pygdnsd_python(), "-c", FAKE_START, str(port), str(tmp_path / "run")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = wait_for_line(proc, "DNS listeners started")
        assert lines[-1] == "info: DNS listeners started\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(WAIT)
            client.sendto(b"q", ("127.0.0.1", port))
            assert client.recv(512) == b"ans:q"
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(b"\x00\x0ctwelve bytes")  # gdnsd's shortest TCP request: a header
            assert client.recv(512) == b"\x00\x10ans:twelve bytes"
        os.kill(proc.pid, signum)
        assert proc.wait(timeout=5) == 0
        assert proc.stderr is not None
        assert f"Exiting cleanly on receipt of terminating signal {signum}" in proc.stderr.read()
        assert len((tmp_path / "run" / "cookie.autokey").read_bytes()) == 32
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()


def test_python_dash_m_entry_point_usage() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "service"))
    result = subprocess.run(
        [sys.executable, "-m", "pygdnsd", "nonsense"],
        capture_output=True, text=True, env=env, timeout=WAIT, check=False,
    )
    assert result.returncode == 2
    assert "Usage: gdnsd" in result.stderr
