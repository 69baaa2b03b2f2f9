"""Zone files and ``$INCLUDE``d files opened for reading: regular files only, read no further than their size.

``$INCLUDE /dev/zero`` once grew ``checkconf`` to 10 GB in 20 s (a device
never ends), and ``$INCLUDE`` of a FIFO hung it (opening one blocks until a
writer comes). gdnsd 3.8.1 refuses anything but a regular file ("not a
regular file") and hangs on a FIFO: here a FIFO is refused too, at once
(opened without blocking, then looked at), and a regular file is read up
to the size it had when opened, so one that grows while it is read (a log
someone pointed at) is read as it was.
"""

from __future__ import annotations

import io
import os
import stat

from pygdnsd.errors import ZoneError

# What a read asks the file for at a time (the parser reads in blocks of this many characters).
READ_BYTES = 1 << 16


class _UpToSize(io.RawIOBase):
    """A file's bytes, at most ``size`` of them."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self._file = io.FileIO(fd, "rb", closefd=True)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._left)
        if wanted <= 0:
            return 0
        got = self._file.readinto(memoryview(buffer)[:wanted]) or 0
        self._left -= got
        return got

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()
        super().close()


def open_zone_text(path: str) -> io.TextIOWrapper:
    """``path`` open as text (utf-8, undecodable bytes kept as surrogates, newlines as written).

    Raises ``ZoneError`` naming ``path`` when it cannot be opened or is not
    a regular file (a directory, a device, a FIFO, a socket).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ZoneError(f"cannot open zone file for reading: {exc.strerror}", path) from None
    try:
        mode = os.fstat(fd)
        if not stat.S_ISREG(mode.st_mode):
            raise ZoneError("not a regular file (a zone file or $INCLUDE must be one)", path)
        os.set_blocking(fd, True)
        raw = _UpToSize(fd, mode.st_size)
    except BaseException:
        os.close(fd)
        raise
    return io.TextIOWrapper(
        io.BufferedReader(raw, READ_BYTES), encoding="utf-8", errors="surrogateescape", newline=""
    )
