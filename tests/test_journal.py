"""systemd.journal: which fields an entry gets, and when the journal is chosen."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from pygdnsd.systemd import journal


def test_entry_fields_with_structured_extras() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    handler = journal.JournalHandler(lambda message, **fields: sent.append((message, fields)))
    logger = logging.getLogger("pygdnsd.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning(
            "replace done: %d -> %d", 10, 11, extra={"GDNSD_EVENT": "replace-done", "GDNSD_OLD_PID": 10, "lower": 1}
        )
        logger.error("broken")
        logger.debug("detail")
    finally:
        logger.removeHandler(handler)
    (message, fields), (_, error_fields), (_, debug_fields) = sent
    assert isinstance(fields["CODE_LINE"], int)  # systemd.journal.send needs an int
    assert message == "replace done: 10 -> 11"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "gdnsd"
    assert fields["GDNSD_EVENT"] == "replace-done"
    assert fields["GDNSD_OLD_PID"] == "10"
    assert fields["LOGGER"] == "pygdnsd.test.journal"
    assert "lower" not in fields and "LOWER" not in fields and "MSG" not in fields
    assert (error_fields["PRIORITY"], debug_fields["PRIORITY"]) == ("3", "7")
    assert "GDNSD_EVENT" not in error_fields


@pytest.mark.parametrize(
    ("level", "expected"),
    [(logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6), (logging.DEBUG, 7), (25, 6)],
)
def test_priority_from_level(level: int, expected: int) -> None:
    assert journal.priority(level) == expected


def test_journal_wanted_rule(tmp_path: Path) -> None:
    sock_path = tmp_path / "journal.socket"
    missing = tmp_path / "none"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        assert journal.journal_wanted({"INVOCATION_ID": "abc"}, sock_path)
        assert journal.journal_wanted({"JOURNAL_STREAM": "8:123"}, sock_path)
        assert not journal.journal_wanted({}, sock_path)  # a terminal or an init script
        assert not journal.journal_wanted({"INVOCATION_ID": "abc"}, missing)  # no journald


def test_journal_handler_uses_systemd_python_here() -> None:
    handler = journal.journal_handler()
    assert isinstance(handler, journal.JournalHandler)
    import systemd.journal

    assert handler.sender is systemd.journal.send
