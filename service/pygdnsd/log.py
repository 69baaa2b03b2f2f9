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

No line goes nowhere (``route``): syslog(3) drops lines silently when no
syslog daemon listens (a container, this project's test machines), and a
failed reload's reason was lost that way. A sink that cannot take lines is
replaced -- syslog by the journal if journald listens, else by stderr -- and
the first line logged says so. A daemonized process has stderr on
/dev/null: ``keeps_lines`` tells whether the starting command's stderr (a
terminal, a file) can stay the daemon's instead.

While zones load (``warnings_held``), stderr's warning lines are written
together, many to a ``write``, instead of one ``write`` each: a zone may
warn 100,000 times. Anything else logged, the end of the load and the
handler's flush (``logging.shutdown``, at exit) write them first, so the
order and the lines stay as they were. Syslog and the journal still get
one message per warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import syslog
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
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
        # The dict first: level_word's loop was a sixth of a warning line's cost.
        word = LEVEL_WORDS.get(record.levelno) or level_word(record.levelno)
        text = f"{word}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


# At most this many characters of warning lines wait for one write: about 500
# lines, so a load warning 77,000 times writes some 150 times, and an operator
# tailing stderr sees them come in batches while the zone is still checked.
HELD_CHARS = 64 * 1024

_holding = 0  # how many warnings_held blocks are open, in any thread
_holding_lock = threading.Lock()
_holders: weakref.WeakSet[StderrHandler] = weakref.WeakSet()


def _forked() -> None:
    """In a forked child (a zone-loading worker): the parent's held lines are the parent's to write."""
    global _holding
    _holding = 0
    for handler in list(_holders):
        handler.held.clear()
        handler.held_chars = 0


os.register_at_fork(after_in_child=_forked)


@contextlib.contextmanager
def warnings_held() -> Iterator[None]:
    """stderr's warning lines are written together until the block ends (see the module's docstring)."""
    global _holding
    with _holding_lock:
        _holding += 1
    try:
        yield
    finally:
        with _holding_lock:
            _holding -= 1
            last = _holding == 0
        if last:
            for handler in list(_holders):
                handler.write_held()


class StderrHandler(logging.StreamHandler[TextIO]):
    """gdnsd's ``level: message`` lines; warnings wait in ``held`` inside ``warnings_held``.

    A write per line was about 3.5 us of a warning's 9.6 us when 77,000 of
    them went to a file (bench ``load-warn``).
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(GdnsdFormatter())
        self.held: list[str] = []
        self.held_chars = 0
        _holders.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.put(self.format(record) + self.terminator, record.levelno == logging.WARNING)
        except RecursionError:  # as logging's own handlers: never swallowed
            raise
        except Exception:
            self.handleError(record)

    def put(self, line: str, warning: bool) -> None:
        """``line`` written, or held if it is a ``warning`` in ``warnings_held``; with the handler's lock held."""
        if _holding and warning:
            self.held.append(line)
            self.held_chars += len(line)
            if self.held_chars < HELD_CHARS:
                return
            line = ""
        self._write(line)

    def _write(self, text: str) -> None:
        """The held lines, then ``text``, in one write; called with the handler's lock held."""
        if self.held:
            self.held.append(text)
            text = "".join(self.held)
            self.held.clear()
            self.held_chars = 0
        if text:
            self.stream.write(text)
        self.stream.flush()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._write("")

    def write_held(self) -> None:
        """``flush``, a failed write reported as ``emit`` reports one: the load that held them goes on."""
        try:
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "held warning lines", "levelno": logging.WARNING}))

    def close(self) -> None:
        if self.held:  # it goes out before the handler does
            self.flush()
        super().close()


def frequent_warning(logger: logging.Logger, message: str) -> None:
    """``logger.warning(message)`` for a message that may come 100,000 times, made for less.

    When the one place it would go is a ``StderrHandler`` (the usual
    ``checkconf`` or daemon set-up, see ``sole_stderr_handler``), its line
    goes straight there: no ``LogRecord``, no handler dispatch. Otherwise the
    same record as ``logger.warning``'s goes to every handler (the journal's
    fields, a test's capture), its caller (CODE_FILE/LINE/FUNC) taken from
    the calling frame rather than by ``Logger.findCaller``'s walk.

    Measured with bench ``load-warn``'s 77,000 zone warnings written to a
    file: 9.6 us a warning through ``logger.warning``; 4 us as a record made
    here, its line held (``warnings_held``); 1.0-1.3 us as a direct line.
    """
    if not logger.isEnabledFor(logging.WARNING):
        return
    handler = sole_stderr_handler(logger)
    if handler is None:
        logger.handle(_record(logger, message, sys._getframe(1)))
        return
    line = f"{LEVEL_WORDS[logging.WARNING]}: {message}{handler.terminator}"  # GdnsdFormatter's line
    with handler.lock or contextlib.nullcontext():
        try:
            handler.put(line, True)
        except RecursionError:
            raise
        except Exception:  # reported as emit reports it, and the load goes on
            handler.handleError(_record(logger, message, sys._getframe(1)))


def _record(logger: logging.Logger, message: str, caller: FrameType) -> logging.LogRecord:
    """The record ``logger.warning(message)`` would make, called from ``caller``."""
    code = caller.f_code
    return logger.makeRecord(
        logger.name, logging.WARNING, code.co_filename, caller.f_lineno, message, (), None, code.co_name
    )


def sole_stderr_handler(logger: logging.Logger) -> StderrHandler | None:
    """The ``StderrHandler`` that alone would see ``logger``'s warnings, unchanged, or None.

    As ``Logger.handle`` and ``callHandlers`` decide: no logger filter or
    handler on the way up, then exactly one handler, ours, without filters,
    formatting as ``GdnsdFormatter`` does.
    """
    if logger.disabled or logger.filters:
        return None
    found: StderrHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not StderrHandler
                or handler.filters
                or handler.level > logging.WARNING
                or type(handler.formatter) is not GdnsdFormatter
            ):
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


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


# Where syslog(3) sends its lines: glibc and musl, FreeBSD, macOS.
SYSLOG_SOCKETS = (Path("/dev/log"), Path("/var/run/log"), Path("/var/run/syslog"))
# Test hook: set, no syslog daemon and no journald count as listening, so the
# fallbacks can be tested on a machine that has them.
NO_LOG_DAEMON_ENV = "PYGDNSD_TEST_NO_LOG_DAEMON"


def syslog_listening(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return not env.get(NO_LOG_DAEMON_ENV) and any(path.is_socket() for path in SYSLOG_SOCKETS)


def journal_listening(environ: Mapping[str, str] | None = None) -> bool:
    from pygdnsd.systemd.journal import JOURNAL_SOCKET, journal_handler

    env = os.environ if environ is None else environ
    return not env.get(NO_LOG_DAEMON_ENV) and JOURNAL_SOCKET.is_socket() and journal_handler() is not None


SINK_WORDS: dict[Sink, str] = {"stderr": "stderr", "syslog": "syslog", "journal": "the journal"}


@dataclass(frozen=True, slots=True)
class Route:
    """Where log lines go: the sink, and why not the one asked for ("" when it is that one)."""

    sink: Sink
    why: str = ""

    @property
    def note(self) -> str:
        """The line that says so, or ""."""
        return f"{self.why}: logging to {SINK_WORDS[self.sink]} instead" if self.why else ""


def route(wanted: Sink, environ: Mapping[str, str] | None = None) -> Route:
    """``wanted``, or the sink that takes its lines when it cannot: never none."""
    if wanted == "stderr":
        return Route("stderr")
    if wanted == "journal" and journal_listening(environ):
        return Route("journal")
    if syslog_listening(environ):
        return Route("syslog", "" if wanted == "syslog" else "journald is not reachable")
    *others, last = (str(path) for path in SYSLOG_SOCKETS)
    no_socket = f"no socket at {', '.join(others)} or {last}"
    if wanted == "syslog" and journal_listening(environ):
        return Route("journal", f"syslog is not reachable ({no_socket})")
    if wanted == "syslog":
        return Route("stderr", f"syslog is not reachable ({no_socket})")
    return Route("stderr", f"neither journald nor syslog is reachable ({no_socket})")


def keeps_lines(fd: int) -> bool:
    """Whether ``fd`` leads somewhere a detached daemon may keep writing: a terminal or a file.

    Not a pipe or socket: whoever started us may wait for its end-of-file
    (a shell's ``$(...)``, a test capturing output) and would wait for as long
    as the daemon runs. Not /dev/null, for what it is.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or os.isatty(fd)


def make_handler(sink: Sink, stream: TextIO | None = None) -> logging.Handler:
    if sink == "syslog":
        return SyslogHandler()
    if sink == "journal":
        return _journal_handler()
    return StderrHandler(stream if stream is not None else sys.stderr)


def setup(sink: Sink = "stderr", debug: bool = False, stream: TextIO | None = None, announce: bool = True) -> Route:
    """Route every log record to ``sink`` (or ``route``'s stand-in), replacing any earlier setup.

    ``announce``: log the stand-in's note (a daemon's log must say where it
    went; a short-lived command's lines go to stderr either way).
    """
    chosen = route(sink)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(make_handler(chosen.sink, stream))
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if chosen.note and announce:
        logging.getLogger(IDENT).warning("%s", chosen.note)
    return chosen
