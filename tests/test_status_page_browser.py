"""The status page in a real headless browser (Debian's chromium): screenshots, its DOM, its requests.

The screenshots at a laptop's 1280x800 and a phone's 390x844 are kept in
``.test-artifacts/status-page/`` (not committed) for a person to look at.
Chromium is started so that it cannot reach anything but loopback (every
other host goes to a dead local proxy, and no name resolves), and its net
log shows what the page asked for: nothing but itself.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPO, free_port
from daemon_support import Site, daemonize, wait_for
from status_support import QueryLoad, fetch, metrics, write_site

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / ".test-artifacts" / "status-page"
SIZES = {"laptop": (1280, 800), "phone": (390, 844)}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (dev/bootstrap)")


class Page(HTMLParser):
    """Ids, tags, each table's rows and anything that would load from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.loads: list[str] = []
        self.bands: list[str] = []
        self.rows: dict[str, int] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "table":
            self._table = attributes.get("id")
        if tag == "tr" and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1
        if tag == "path" and attributes.get("class") == "band":
            self.bands.append(str(attributes.get("data-rcode")))
        if tag != "a" and (attributes.get("src") or attributes.get("href") or attributes.get("srcset")):
            self.loads.append(f"{tag}: {attributes.get('src') or attributes.get('href')}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None


@pytest.fixture
def checked_service() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (127.0.0.2 refuses it): one service UP, one DOWN."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def chromium(url: str, out: Path, size: tuple[int, int], *action: str) -> subprocess.CompletedProcess[bytes]:
    """Chromium headless on ``url``; it can reach loopback only. Its net log goes to ``out``.netlog.json."""
    dead_proxy = free_port()
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", f"--user-data-dir={out.parent / 'profile'}",
            f"--proxy-server=127.0.0.1:{dead_proxy}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--log-net-log={out}.netlog.json", f"--window-size={size[0]},{size[1]}", *action, url,
        ],
        capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )


def page_requests(netlog: Path, origin: str) -> tuple[list[str], list[str]]:
    """(URLs the page itself asked for, URLs it navigated to) from a chromium net log."""
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    by_page, navigations = [], []
    for event in log["events"]:
        params = event.get("params", {})
        if names.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        if params.get("initiator") == origin:
            by_page.append(params["url"])
        elif params["url"].startswith(origin):
            navigations.append(params["url"])
    return by_page, navigations


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_the_status_page_in_chromium_at_laptop_and_phone_sizes(site: Site, checked_service: int, tmp_path: Path) -> None:
    port = free_port()
    write_site(site, port)
    config = site.cfgdir / "config"
    config.write_text(
        config.read_text()
        + "service_types => { web => { plugin => tcp_connect, port => "
        + f"{checked_service}, interval => 2, timeout => 1, up_thresh => 1, ok_thresh => 1, down_thresh => 1 }} }}\n"
        + "plugins => { simplefo => { www => { primary => 127.0.0.1, secondary => 127.0.0.2, service_types => web } } }\n"
    )
    daemonize(site)
    with QueryLoad(site.port, qps=100):
        # Two samples of the counters (one every 10 s) make the chart's first rates.
        assert wait_for(lambda: fetch(port, "/")[2].count(b'class="band"') > 0, 30.0)
    status, headers, body = fetch(port, "/")
    assert status == 200 and len(body) < 100_000
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/"
    origin = url.rstrip("/")
    for name, size in SIZES.items():
        shot = ARTIFACTS / f"{name}-{size[0]}x{size[1]}.png"
        shot.unlink(missing_ok=True)
        result = chromium(url, tmp_path / name, size, f"--screenshot={shot}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert png_size(shot) == size and shot.stat().st_size > 10_000
        by_page, navigations = page_requests(tmp_path / f"{name}.netlog.json", origin)
        assert by_page == [] and navigations == [url]
        dom = chromium(url, tmp_path / f"{name}-dom", size, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        (ARTIFACTS / f"{name}-dom.html").write_bytes(dom.stdout)
        page = Page()
        page.feed(dom.stdout.decode())
        assert {"qps-chart", "state-table", "zone-table", "history-table", "counters"} <= page.ids
        assert page.rows["state-table"] == 3  # a header and both services
        assert "noerror" in page.bands
        assert "script" not in page.tags and page.loads == []
    text = body.decode()
    assert "127.0.0.1/web</td><td class=\"UP\">UP" in text and "127.0.0.2/web</td><td class=\"DOWN\">DOWN" in text
    found = metrics(port)
    assert found[("gdnsd_service_state", (("resource", "127.0.0.1"), ("service_type", "web")))] == 1
    assert found[("gdnsd_service_state", (("resource", "127.0.0.2"), ("service_type", "web")))] == 0
