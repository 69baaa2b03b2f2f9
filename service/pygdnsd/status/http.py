"""HTTP/1.1 for the status listener, sans I/O: a request head in, response bytes out.

Only what a read-only status endpoint needs: GET and HEAD of an origin-form
path, no request body, one request per connection (every response says
``Connection: close``). Keeping connections short means a connection is only
ever in one daemon's hands: during a replace the old daemon answers what it
accepted and the new one accepts the rest from the same listening socket, so
a scraper never has a kept-alive connection closed under it.

Malformed input is answered with the fitting 4xx status and the connection
closes; a head that does not end within ``MAX_HEAD`` bytes is refused (431)
without reading on, so no client makes us buffer more than that.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_HEAD = 8192
MAX_HEADERS = 64
ALLOWED_METHODS = ("GET", "HEAD")
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # the target's path, query cut off (nothing here reads a query)
    version: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=())


class HttpError(Exception):
    """The request cannot be served: answer ``status`` and close."""

    def __init__(self, status: int, detail: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = tuple(headers)

    def response(self) -> Response:
        text = f"{self.status} {REASONS[self.status]}: {self}\n"
        return Response(self.status, "text/plain; charset=utf-8", text.encode(), self.headers)


def _head_end(buffer: bytes | bytearray) -> int:
    """Where the head ends (the index past its blank line), or -1 while it has not."""
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else -1


def _token(text: bytes) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def parse_head(buffer: bytes | bytearray) -> Request | None:
    """The request whose head ``buffer`` starts with; None while the head is incomplete.

    Raises HttpError for anything that will not be served.
    """
    end = _head_end(buffer)
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise HttpError(431, f"the request head is over {MAX_HEAD} bytes")
        return None
    if end > MAX_HEAD:
        raise HttpError(431, f"the request head is over {MAX_HEAD} bytes")
    lines = bytes(buffer[:end]).replace(b"\r\n", b"\n").split(b"\n")
    while lines and lines[0] == b"":  # RFC 9112 2.2: empty lines before the request line are ignored
        lines.pop(0)
    if not lines:
        raise HttpError(400, "no request line")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "the request line is not 'METHOD TARGET VERSION'")
    method, target, version = parts
    if not _token(method):
        raise HttpError(400, "the method is not a token")
    if not version.startswith(b"HTTP/"):
        raise HttpError(400, "no HTTP version")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are spoken here")
    if not target.startswith(b"/") or any(c <= 0x20 or c >= 0x7F for c in target):
        raise HttpError(400, "the target is not an absolute path")
    headers = [line for line in lines[1:] if line]
    if len(headers) > MAX_HEADERS:
        raise HttpError(431, f"over {MAX_HEADERS} header fields")
    for line in headers:
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete line folding")
        name, colon, value = line.partition(b":")
        if not colon or not _token(name):
            raise HttpError(400, "a header field is not 'name: value'")
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            raise HttpError(501, "request bodies are not accepted")
        if lowered == b"content-length" and value.strip() != b"0":
            raise HttpError(413, "request bodies are not accepted")
    text_method = method.decode("ascii")
    if text_method not in ALLOWED_METHODS:
        raise HttpError(405, f"{text_method} is not served: read-only", [("Allow", ", ".join(ALLOWED_METHODS))])
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    return Request(text_method, path.decode("ascii"), version.decode("ascii"))


def encode(response: Response, head_only: bool = False, now: float | None = None) -> bytes:
    """The response's bytes; ``head_only`` (HEAD) leaves the body out but keeps its length."""
    lines = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
        f"Date: {email.utils.formatdate(now, usegmt=True)}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body
