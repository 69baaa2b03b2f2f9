"""Where log lines go, and how they look.

Every module logs through the standard ``logging`` package; ``setup`` routes
the root logger to one sink:

* ``stderr`` (default): gdnsd's ``level: message`` lines, e.g.
  ``info: DNS listeners started``;
* ``syslog`` (``-l``): facility daemon, ident ``gdnsd``, with the pid;
* ``journal``: systemd's journal with structured fields
  (``systemd.journal``), for running under systemd (chosen by the caller,
  see ``journal.journal_wanted``); syslog if no journal library is installed.

``-D`` adds debug-level lines.
"""

from __future__ import annotations

import logging
import sys
import syslog
from typing import Literal, TextIO

Sink = Literal["stderr", "syslog", "journal"]

IDENT = "gdnsd"

# gdnsd's words for each level; "fatal" precedes an exit.
LEVEL_WORDS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}

SYSLOG_PRIORITIES = {
    logging.DEBUG: syslog.LOG_DEBUG,
    logging.INFO: syslog.LOG_INFO,
    logging.WARNING: syslog.LOG_WARNING,
    logging.ERROR: syslog.LOG_ERR,
    logging.CRITICAL: syslog.LOG_CRIT,
}


def level_word(levelno: int) -> str:
    """The word of the highest level at or below ``levelno``."""
    word = "debug"
    for level, name in sorted(LEVEL_WORDS.items()):
        if levelno >= level:
            word = name
    return word


class GdnsdFormatter(logging.Formatter):
    """``level: message``, tracebacks (if any) on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{level_word(record.levelno)}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class SyslogHandler(logging.Handler):
    """Through libc's syslog(3), so lines carry the right priority and our pid."""

    def __init__(self) -> None:
        super().__init__()
        syslog.openlog(IDENT, syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_DAEMON)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            priority = SYSLOG_PRIORITIES.get(record.levelno, syslog.LOG_ERR)
            syslog.syslog(priority, record.getMessage())
        except Exception:
            self.handleError(record)


def _journal_handler() -> logging.Handler:
    from pygdnsd.systemd.journal import journal_handler

    handler = journal_handler(IDENT)
    return handler if handler is not None else SyslogHandler()


def make_handler(sink: Sink, stream: TextIO | None = None) -> logging.Handler:
    if sink == "syslog":
        return SyslogHandler()
    if sink == "journal":
        return _journal_handler()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(GdnsdFormatter())
    return handler


def setup(sink: Sink = "stderr", debug: bool = False, stream: TextIO | None = None) -> None:
    """Route every log record to ``sink``, replacing any earlier setup."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(make_handler(sink, stream))
    root.setLevel(logging.DEBUG if debug else logging.INFO)
