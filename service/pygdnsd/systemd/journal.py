"""Logging straight to journald, with structured fields, when systemd runs us.

The rule (``journal_wanted``): log to the journal when systemd started us --
``$INVOCATION_ID`` (set for every unit process, ExecReload's too, so a
replacement instance inherits it) or ``$JOURNAL_STREAM`` (our stderr is a
journal stream) -- and journald's socket exists. Otherwise (a terminal, an
init script, a container without journald) gdnsd-style stderr/syslog
logging stays.

Each record becomes one journal entry: MESSAGE, PRIORITY (from the level),
SYSLOG_IDENTIFIER=gdnsd (``journalctl -t gdnsd`` finds every generation even
after MAINPID moved, which ``-u`` may not), LOGGER, CODE_FILE/LINE/FUNC, and
every record attribute whose name is an upper-case journal field name, so
``log.info("...", extra={"GDNSD_EVENT": "replace-done", "GDNSD_OLD_PID": 12})``
is searchable with ``journalctl GDNSD_EVENT=replace-done``.

Backends: systemd-python's ``systemd.journal.send``, else cysystemd's
``cysystemd.journal.send``. systemd-python's own JournalHandler is not used: it
forwards *every* record attribute (msg, args, created, ...) as a field.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

IDENTIFIER = "gdnsd"
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# A journal field name: upper case, digits, underscore; no leading underscore
# (those are trusted fields journald sets itself).
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
# syslog priorities (sd-journal uses them as PRIORITY).
LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG = 2, 3, 4, 6, 7

Sender = Callable[..., Any]


def journal_wanted(environ: Mapping[str, str] | None = None, socket_path: Path = JOURNAL_SOCKET) -> bool:
    env = os.environ if environ is None else environ
    started_by_systemd = bool(env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM"))
    return started_by_systemd and socket_path.is_socket()


def priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return LOG_CRIT
    if levelno >= logging.ERROR:
        return LOG_ERR
    if levelno >= logging.WARNING:
        return LOG_WARNING
    if levelno >= logging.INFO:
        return LOG_INFO
    return LOG_DEBUG


def journal_fields(record: logging.LogRecord, message: str, identifier: str = IDENTIFIER) -> dict[str, str]:
    """Every field of one entry (pure: the handler's only logic)."""
    fields = {
        "MESSAGE": message,
        "PRIORITY": str(priority(record.levelno)),
        "SYSLOG_IDENTIFIER": identifier,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
        "THREAD_NAME": record.threadName or "",
    }
    for name, value in vars(record).items():
        if _FIELD_NAME.fullmatch(name) and name not in fields:
            fields[name] = str(value)
    return fields


class JournalHandler(logging.Handler):
    """One journal entry per record, sent with ``sender(**fields)``."""

    def __init__(self, sender: Sender, identifier: str = IDENTIFIER, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.sender = sender
        self.identifier = identifier

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = journal_fields(record, self.format(record), self.identifier)
            message = fields.pop("MESSAGE")
            # systemd-python formats CODE_LINE with "{:d}": it must stay an int.
            self.sender(message, **{**fields, "CODE_LINE": record.lineno})
        except Exception:
            self.handleError(record)


def _library_sender() -> Sender | None:
    for module_name in ("systemd.journal", "cysystemd.journal"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        send = getattr(module, "send", None)
        if callable(send):
            # Both take the message first and other fields as keyword arguments.
            return send  # type: ignore[no-any-return]
    return None


def journal_handler(identifier: str = IDENTIFIER) -> logging.Handler | None:
    """A handler writing to journald, or None when no journal library is importable."""
    sender = _library_sender()
    return None if sender is None else JournalHandler(sender, identifier)
