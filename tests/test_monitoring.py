"""Monitoring: service_types config, the anti-flap machine, admin_state and extfile parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygdnsd.config.vscf import ConfigHash, parse_bytes
from pygdnsd.errors import ConfigError
from pygdnsd.monitoring.admin_state import Override, forced_states, parse_overrides
from pygdnsd.monitoring.antiflap import Thresholds, Tracker, first_result, next_result
from pygdnsd.monitoring.extfile import parse_states, results_for
from pygdnsd.monitoring.service_types import (
    Extfile,
    HttpStatus,
    ServiceType,
    TcpConnect,
    parse_service_types,
)
from pygdnsd.monitoring.sttl import TTL_MAX, Sttl


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
