"""Monitoring: service_types config, the anti-flap machine, admin_state and extfile parsing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daemon_support import wait_for
from pygdnsd.config.vscf import ConfigHash, parse_bytes
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.admin_state import Override, forced_states, parse_overrides
from pygdnsd.monitoring.antiflap import Thresholds, Tracker, first_result, next_result
from pygdnsd.monitoring.extfile import parse_states, results_for
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.monitoring.service_types import (
    Extfile,
    HttpStatus,
    ServiceType,
    TcpConnect,
    parse_service_types,
)
from pygdnsd.monitoring.sttl import TTL_MAX, Sttl
from pygdnsd.plugins.registry import load_plugins


def stypes(text: bytes, state_dir: Path = Path("/var/lib/gdnsd")) -> dict[str, ServiceType]:
    top = parse_bytes(b"service_types => {" + text + b"}", "config")
    assert isinstance(top, ConfigHash)
    raw = top["service_types"]
    assert isinstance(raw, ConfigHash)
    return dict(parse_service_types(raw, state_dir))


def run(results: list[bool], t: Thresholds) -> list[str]:
    """The state text after each result, as gdnsd logs it."""
    tracker: Tracker | None = None
    out = []
    for ok in results:
        tracker = first_result(ok) if tracker is None else next_result(tracker, ok, t)
        out.append(tracker.sttl(t).text())
    return out


def test_antiflap_matches_gdnsd_logs() -> None:
    # gdnsd 3.8.1 with up_thresh 3, down_thresh 2, ok_thresh 2, interval 2 logged:
    # initialized to UP/4, changed from UP/2 to DOWN/6, changed from DOWN/2 to UP/4.
    t = Thresholds(up_thresh=3, ok_thresh=2, down_thresh=2, interval=2)
    assert run([True, False, False, True, True, True], t) == [
        "UP/4",
        "UP/2",
        "DOWN/6",
        "DOWN/4",
        "DOWN/2",
        "UP/4",
    ]
    assert run([False], t) == ["DOWN/6"]


def test_failures_count_across_successes_until_ok_thresh_in_a_row() -> None:
    t = Thresholds(up_thresh=3, ok_thresh=3, down_thresh=3, interval=1)
    # Isolated failures between single successes still add up to down_thresh.
    assert run([True, False, True, False, True, False], t)[-1] == "DOWN/3"
    # ok_thresh successes in a row reset the count.
    assert run([True, False, False, True, True, True, False, False], t)[-1] == "UP/1"
    # A failure while DOWN restarts the streak.
    assert run([False, True, True, False, True, True], t)[-1] == "DOWN/1"


def test_service_type_defaults() -> None:
    found = stypes(
        b"web => { plugin => http_status }, t => { plugin => tcp_connect, port => 9000 }"
    )
    web = found["web"]
    assert web.check == HttpStatus(80, "/", None, (200,))
    assert web.thresholds == Thresholds(20, 10, 10, 10)
    assert web.timeout == 5
    assert found["t"].check == TcpConnect(9000)
    assert {"up", "down"} <= set(found)


def test_extfile_relative_path_is_under_state_dir() -> None:
    found = stypes(b"e => { plugin => extfile, file => data }", Path("/st"))
    assert found["e"].check == Extfile(Path("/st/extfile/data"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"x => { port => 80 }", r"config:1: service type 'x': 'plugin' must be defined"),
        (b"x => { plugin => tcp_connect }", r"config:1: .*'port'"),
        (
            b"x => { plugin => tcp_connect, port => 80, timeout => 10 }",
            r"timeout must be less than interval",
        ),
        (
            b"x => { plugin => tcp_connect, port => 80, interval => 1 }",
            r"'interval': value out of range \(2, 3600\)",
        ),
        (
            b"x => {\n plugin => tcp_connect, port => 80, up_thresh => 0 }",
            r"config:2: .*'up_thresh'",
        ),
        (b"x => { plugin => tcp_connect, port => 80, junk => 0 }", r"bad option 'junk'"),
        (b"x => { plugin => http_status, ok_codes => [200, 99] }", r"illegal ok_codes value '99'"),
        (b"x => { plugin => extmon }", r"'cmd' must be defined"),
        (b"x => { plugin => extfile }", r"'file' option is required"),
        (b"x => { plugin => bogus }", r"no such monitoring plugin 'bogus'"),
        (
            b"up => { plugin => tcp_connect, port => 80 }",
            r"explicit service type name 'up' not allowed",
        ),
    ],
)
def test_bad_service_types(text: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        stypes(text)


def test_admin_state_globs_later_lines_win() -> None:
    overrides = parse_overrides(
        b"192.0.2.1/* => DOWN\n*/xmpp => UP/30\n192.0.2.2/xmpp => DOWN\n", "admin_state"
    )
    assert overrides[1] == Override("*/xmpp", Sttl(down=False, ttl=30, forced=True))
    names = ["192.0.2.1/xmpp", "192.0.2.1/web", "192.0.2.2/xmpp", "192.0.2.3/web"]
    forced = forced_states(overrides, names)
    assert forced == {
        "192.0.2.1/xmpp": Sttl(down=False, ttl=30, forced=True),
        "192.0.2.1/web": Sttl(down=True, ttl=TTL_MAX, forced=True),
        "192.0.2.2/xmpp": Sttl(down=True, ttl=TTL_MAX, forced=True),
    }


@pytest.mark.parametrize("text", [b"a => SIDEWAYS\n", b"a => UP/x\n", b"a => [UP]\n"])
def test_bad_admin_state(text: bytes) -> None:
    with pytest.raises(ConfigError, match="admin_state:1: admin_state: the value of 'a'"):
        parse_overrides(text, "admin_state")


def test_extfile_defaults() -> None:
    found = parse_states(b"192.0.2.1 => DOWN/242\n192.0.2.2 => UP\n", "f")
    check = Extfile(Path("f"), direct=True, def_ttl=600, def_down=True)
    assert results_for(found, ["192.0.2.1", "192.0.2.2", "192.0.2.3"], check) == {
        "192.0.2.1": Sttl(down=True, ttl=242),
        "192.0.2.2": Sttl(down=False, ttl=600),
        "192.0.2.3": Sttl(down=True, ttl=600),
    }


EXTFILE_CONFIG = b"""
service_types => {
  extd => { plugin => extfile, file => extd, direct => true }
  extm => { plugin => extfile, file => extm }
}
plugins => { simplefo => {
  rd => { service_types => extd, primary => 127.0.0.1, secondary => 192.0.2.1 }
  rm => { service_types => extm, primary => 127.0.0.1, secondary => 192.0.2.1 }
} }
"""


def extfile_monitor(state_dir: Path) -> Monitor:
    top = parse_bytes(EXTFILE_CONFIG, "config")
    assert isinstance(top, ConfigHash)
    raw_types, plugins = top["service_types"], top["plugins"]
    assert isinstance(raw_types, ConfigHash) and isinstance(plugins, ConfigHash)
    monitor = Monitor(parse_service_types(raw_types, state_dir), state_dir)
    load_plugins(plugins, monitor)
    (state_dir / "extfile").mkdir(parents=True, exist_ok=True)
    return monitor


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_an_extfile_missing_at_startup_leaves_its_states_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # gdnsd 3.8.1: an error, no state lines, and UP/MAX (def_down or not) until the file loads.
    monitor = extfile_monitor(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="pygdnsd.monitoring"):
        monitor.initial_round()
    path = tmp_path / "extfile" / "extd"
    assert f"plugin_extfile: Service type 'extd': loading file '{path}' failed: No such file or directory" in logged(caplog)
    assert not any("initialized" in line or "loaded new data" in line for line in logged(caplog))
    assert monitor.states["127.0.0.1/extd"] == Sttl(down=False, ttl=TTL_MAX)
    assert '"127.0.0.1/extm": {"state": "UP", "real_state": "UP"}' in monitor.states_json()


def test_extfile_loads_log_in_gdnsd_words(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The lines gdnsd's suite waits for (017extfile, 018admin), in gdnsd's order.
    monitor = extfile_monitor(tmp_path)
    extd, extm = tmp_path / "extfile" / "extd", tmp_path / "extfile" / "extm"
    extd.write_text("127.0.0.1 => down/42\n")
    extm.write_text("127.0.0.1 => up/30\n192.0.2.1 => up\n")
    with caplog.at_level(logging.DEBUG, logger="pygdnsd.monitoring"):
        monitor.initial_round()
    assert logged(caplog)[1:5] == [
        "plugin_extfile: Service type 'extd': '192.0.2.1' was defaulted! (not specified by input file)",
        "state of '127.0.0.1/extd' initialized to DOWN/42",
        "state of '192.0.2.1/extd' initialized to UP/MAX",
        f"plugin_extfile: Service type 'extd': loaded new data from file '{extd}'",
    ]
    assert (
        f"plugin_extfile: Service type 'extm': TTL value for '127.0.0.1' in file '{extm}' ignored in 'monitor' mode"
        in logged(caplog)
    )
    # Forced by admin_state, a change of the real state says the forced one stays.
    (tmp_path / "admin_state").write_text("127.0.0.1/extd => DOWN\n")
    monitor.reload_admin_state()
    caplog.clear()
    monitor.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="pygdnsd.monitoring"):
            extd.write_text("127.0.0.1 => up\n192.0.2.1 => up\n")
            assert wait_for(lambda: any("'extd': loaded new data" in line for line in logged(caplog)))
            assert (
                "state of '127.0.0.1/extd' changed from DOWN/42 to UP/MAX, "
                "effective state remains administratively forced to DOWN/MAX"
            ) in logged(caplog)
            caplog.clear()
            extd.write_text("127.0.0.1 => SIDEWAYS\n")
            assert wait_for(lambda: any("file load failed" in line for line in logged(caplog)))
    finally:
        monitor.stop()
    assert logged(caplog)[-1] == "plugin_extfile: Service type 'extd': file load failed, no updates applied"
    assert "'127.0.0.1'" in logged(caplog)[-2]  # the file's problem, at its line
    assert monitor.states["192.0.2.1/extd"] == Sttl(down=False, ttl=TTL_MAX)  # no update applied
