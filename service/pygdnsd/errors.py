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
