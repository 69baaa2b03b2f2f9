"""log: held warning lines keep their order and are never lost; the cheaper warning record."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pty
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pygdnsd import log
from pygdnsd.systemd import journal


class CountingStream(io.StringIO):
    """A stream that counts its writes (one ``write`` per held batch, not per line)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    out = CountingStream()
    log.setup("stderr", stream=out)
    yield out
    log.setup("stderr", stream=io.StringIO())


LOGGER = logging.getLogger("pygdnsd.test.log")


@contextlib.contextmanager
def only_ours() -> Iterator[logging.Handler]:
    """The root logger with log.setup's handler alone, as outside pytest (whose capture handlers come off)."""
    root = logging.getLogger()
    was = list(root.handlers)
    ours: list[logging.Handler] = [handler for handler in was if isinstance(handler, log.StderrHandler)]
    root.handlers = ours
    try:
        yield ours[0]
    finally:
        root.handlers = was


def test_held_warnings_wait_for_the_end_of_the_block(stream: CountingStream) -> None:
    with log.warnings_held():
        LOGGER.warning("one")
        log.frequent_warning(LOGGER, "two")
        assert stream.getvalue() == ""
    assert stream.getvalue() == "warning: one\nwarning: two\n"
    assert stream.writes == 1


def test_anything_else_logged_writes_the_held_lines_first(stream: CountingStream) -> None:
    with log.warnings_held():
        LOGGER.warning("one")
        LOGGER.info("between")
        assert stream.getvalue() == "warning: one\ninfo: between\n"
        LOGGER.warning("two")
        LOGGER.error("broken")
        LOGGER.warning("three")
    assert stream.getvalue().splitlines() == [
        "warning: one",
        "info: between",
        "warning: two",
        "error: broken",
        "warning: three",
    ]


def test_nested_blocks_hold_until_the_outer_one_ends(stream: CountingStream) -> None:
    with log.warnings_held():
        with log.warnings_held():
            LOGGER.warning("inner")
        assert stream.getvalue() == ""
    assert stream.getvalue() == "warning: inner\n"


def test_many_warnings_go_out_in_bounded_batches(stream: CountingStream) -> None:
    line = "x" * 99  # 109 characters with "warning: " and the newline
    count = 3 * log.HELD_CHARS // 109
    with log.warnings_held():
        for _ in range(count):
            log.frequent_warning(LOGGER, line)
        assert 2 <= stream.writes <= 3  # written while still held: memory stays bounded
    assert stream.getvalue() == f"warning: {line}\n" * count
    assert stream.writes <= 4


def test_a_flush_or_close_writes_what_is_held(stream: CountingStream) -> None:
    with log.warnings_held():
        LOGGER.warning("flushed")
        logging.getLogger().handlers[0].flush()
        assert stream.getvalue() == "warning: flushed\n"
        LOGGER.warning("closed")
        log.setup("stderr", stream=io.StringIO())  # closes the handler holding it
    assert stream.getvalue() == "warning: flushed\nwarning: closed\n"


def test_held_lines_reach_stderr_when_the_process_exits() -> None:
    # checkconf ends with logging.shutdown() and os._exit(): nothing held may be lost.
    script = textwrap.dedent(
        """
        import logging, os
        from pygdnsd import log
        log.setup("stderr")
        held = log.warnings_held()
        held.__enter__()
        log.frequent_warning(logging.getLogger("pygdnsd.zones"), "still written")
        logging.shutdown()
        os._exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr == "warning: still written\n"


def test_outside_a_block_each_line_is_written_at_once(stream: CountingStream) -> None:
    LOGGER.warning("now")
    assert stream.getvalue() == "warning: now\n"


def _records(emit: Any) -> list[logging.LogRecord]:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    LOGGER.addHandler(keep)
    try:
        emit()
    finally:
        LOGGER.removeHandler(keep)
    return seen


def test_the_cheaper_warning_is_the_same_record() -> None:
    def both() -> None:
        LOGGER.warning("50% sure")
        log.frequent_warning(LOGGER, "50% sure")

    plain, cheap = _records(both)
    assert cheap.getMessage() == plain.getMessage() == "50% sure"
    assert (cheap.levelno, cheap.levelname, cheap.name) == (plain.levelno, plain.levelname, plain.name)
    # The caller, as findCaller gives it: this function, one line further down.
    assert (cheap.pathname, cheap.funcName) == (plain.pathname, plain.funcName) == (__file__, "both")
    assert cheap.lineno == plain.lineno + 1
    plain_fields = journal.journal_fields(plain, plain.getMessage())
    cheap_fields = journal.journal_fields(cheap, cheap.getMessage())
    assert {**cheap_fields, "CODE_LINE": ""} == {**plain_fields, "CODE_LINE": ""}


def test_the_cheaper_warning_respects_the_level() -> None:
    LOGGER.setLevel(logging.ERROR)
    try:
        assert _records(lambda: log.frequent_warning(LOGGER, "hidden")) == []
    finally:
        LOGGER.setLevel(logging.NOTSET)


def test_the_direct_line_is_the_line_a_record_gives(stream: CountingStream) -> None:
    with only_ours() as ours:
        assert log.sole_stderr_handler(LOGGER) is ours
        LOGGER.warning("50%% sure: %s", "x")
        log.frequent_warning(LOGGER, "50% sure: x")
        with log.warnings_held():
            log.frequent_warning(LOGGER, "held")
            assert stream.getvalue().count("\n") == 2
            LOGGER.info("then")
    assert stream.getvalue().splitlines() == ["warning: 50% sure: x"] * 2 + ["warning: held", "info: then"]


def test_any_other_listener_gets_records() -> None:
    # A second handler on the way up (a test's capture, or one added by an
    # embedding program), a filter, or another formatter: no direct line.
    out = CountingStream()
    log.setup("stderr", stream=out)
    with only_ours() as root_handler:
        seen = _records(lambda: log.frequent_warning(LOGGER, "seen"))
        assert [r.getMessage() for r in seen] == ["seen"]
        assert out.getvalue() == "warning: seen\n"
        root_handler.addFilter(lambda record: True)
        assert log.sole_stderr_handler(LOGGER) is None
        root_handler.filters.clear()
        root_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        assert log.sole_stderr_handler(LOGGER) is None
        log.frequent_warning(LOGGER, "formatted")
        assert out.getvalue().splitlines()[-1] == "WARNING formatted"
    log.setup("stderr", stream=io.StringIO())


def test_a_logger_that_does_not_propagate_is_followed() -> None:
    out = CountingStream()
    log.setup("stderr", stream=out)
    alone = logging.getLogger("pygdnsd.test.log.alone")
    alone.propagate = False
    try:
        assert log.sole_stderr_handler(alone) is None
        log.frequent_warning(alone, "nowhere")  # logging's last resort, as for alone.warning
        own = log.StderrHandler(out)
        alone.addHandler(own)
        assert log.sole_stderr_handler(alone) is own
        log.frequent_warning(alone, "own")
        assert out.getvalue() == "warning: own\n"
    finally:
        alone.handlers.clear()
        alone.propagate = True
        log.setup("stderr", stream=io.StringIO())


def test_a_forked_child_writes_its_own_lines_only() -> None:
    # Zone-loading workers are forked while the parent holds warnings: a line
    # the child logs must not repeat the parent's, nor wait for a flush that
    # never comes (workers leave with os._exit).
    script = textwrap.dedent(
        """
        import logging, os
        from pygdnsd import log
        log.setup("stderr")
        zones = logging.getLogger("pygdnsd.zones")
        with log.warnings_held():
            log.frequent_warning(zones, "parent")
            pid = os.fork()
            if pid == 0:
                log.frequent_warning(zones, "child")
                os._exit(0)
            os.waitpid(pid, 0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr == "warning: child\nwarning: parent\n"


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("no space left")


def test_a_broken_stderr_is_reported_and_the_load_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # As logging's own handlers do: handleError, not an exception into the zone loader.
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(log.StderrHandler, "handleError", lambda self, record: reported.append(record))
    log.setup("stderr", stream=BrokenStream())
    with only_ours():
        log.frequent_warning(LOGGER, "direct")
        with log.warnings_held():
            log.frequent_warning(LOGGER, "held")
    log.setup("stderr", stream=io.StringIO())
    assert [record.getMessage() for record in reported] == ["direct", "held warning lines"]


NO_DAEMONS = {log.NO_LOG_DAEMON_ENV: "1"}


def test_a_sink_that_cannot_take_lines_is_replaced_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    assert log.route("stderr", NO_DAEMONS) == log.Route("stderr")
    no_syslog = log.route("syslog", NO_DAEMONS)
    assert no_syslog.sink == "stderr"
    assert no_syslog.note == (
        "syslog is not reachable (no socket at /dev/log, /var/run/log or /var/run/syslog): logging to stderr instead"
    )
    assert log.route("journal", NO_DAEMONS).note.startswith("neither journald nor syslog is reachable (no socket at ")
    # With journald listening and no syslog: the journal takes syslog's lines.
    monkeypatch.setattr(log, "syslog_listening", lambda environ=None: False)
    monkeypatch.setattr(log, "journal_listening", lambda environ=None: True)
    assert log.route("syslog") == log.Route("journal", "syslog is not reachable (no socket at /dev/log, "
                                                      "/var/run/log or /var/run/syslog)")
    monkeypatch.setattr(log, "syslog_listening", lambda environ=None: True)
    monkeypatch.setattr(log, "journal_listening", lambda environ=None: False)
    assert log.route("syslog") == log.Route("syslog")
    assert log.route("journal").note == "journald is not reachable: logging to syslog instead"


def test_setup_without_syslog_logs_to_stderr_and_says_so_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(log.NO_LOG_DAEMON_ENV, "1")
    out = io.StringIO()
    with only_ours():
        chosen = log.setup("syslog", stream=out)
        LOGGER.error("a reason an operator needs")
        log.setup("stderr", stream=io.StringIO())
    assert chosen.sink == "stderr"
    assert out.getvalue() == f"warning: {chosen.note}\nerror: a reason an operator needs\n"


def test_a_detached_daemon_keeps_only_a_terminal_or_a_file(tmp_path: Path) -> None:
    with (tmp_path / "file").open("w") as regular:
        assert log.keeps_lines(regular.fileno())
    read_end, write_end = os.pipe()
    try:
        assert not log.keeps_lines(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with open(os.devnull, "w") as null:
        assert not log.keeps_lines(null.fileno())
    primary, secondary = pty.openpty()
    try:
        assert log.keeps_lines(secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert not log.keeps_lines(9999)  # not open
