"""Exceptions an operator sees. The CLI prints ``str(exc)`` on one line and exits non-zero."""

from __future__ import annotations


class GdnsdError(Exception):
    """Base of every error pygdnsd reports to an operator."""


class ConfigError(GdnsdError):
    """Bad configuration: the message names the file (and line or key)."""


class ZoneError(GdnsdError):
    """Bad zone data. ``str()`` reads ``file:line: problem`` where a line is known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class UsageError(GdnsdError):
    """Bad command line."""


# What an exception means when it carries no message of its own (MemoryError
# never does): the sentence an operator reads instead of an empty reason.
_MEANINGS: tuple[tuple[type[BaseException], str], ...] = (
    (MemoryError, "the process ran out of memory"),
    (KeyboardInterrupt, "interrupted (SIGINT)"),
    (BaseException, "raised without a message (a bug: the traceback is logged with -D)"),
)


def describe(exc: BaseException) -> str:
    """One line an operator can act on, never empty.

    A ``GdnsdError`` says what is wrong in its own words; anything else is
    unexpected, so its type leads, then its text, or what it means when it
    has none (``MemoryError``'s ``str()`` is empty).
    """
    text = str(exc).strip()
    if isinstance(exc, GdnsdError) and text:
        return text
    if not text:
        text = next(meaning for kind, meaning in _MEANINGS if isinstance(exc, kind))
    return f"{type(exc).__name__}: {text}"
