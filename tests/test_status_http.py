"""status.http: request heads in, responses out; everything malformed refused with its status."""

from __future__ import annotations

import pytest

from pygdnsd.status import http
from pygdnsd.status.http import HttpError, Request, Response


def test_a_get_is_read_once_its_head_is_complete() -> None:
    head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
    for cut in range(len(head) - 1):
        assert http.parse_head(head[:cut]) is None
    assert http.parse_head(head) == Request("GET", "/metrics", "HTTP/1.1")
    assert http.parse_head(b"\r\nHEAD / HTTP/1.0\n\n") == Request("HEAD", "/", "HTTP/1.0")
    assert http.parse_head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n") == Request("GET", "/", "HTTP/1.1")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\n\r\n", 400),
        (b"GET / SPDY/3\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 413),
        (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
        (b"DELETE / HTTP/1.1\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * (http.MAX_HEADERS + 1) + b"\r\n", 431),
    ],
)
def test_what_is_not_served_is_refused_with_its_status(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        http.parse_head(head)
    assert info.value.status == status
    response = info.value.response()
    assert response.status == status and str(status).encode() in response.body


def test_a_head_that_never_ends_is_refused_past_the_limit() -> None:
    assert http.parse_head(b"GET / HTTP/1.1\r\nA: " + b"x" * (http.MAX_HEAD - 20)) is None
    with pytest.raises(HttpError) as info:
        http.parse_head(b"GET / HTTP/1.1\r\nA: " + b"x" * http.MAX_HEAD)
    assert info.value.status == 431
    with pytest.raises(HttpError):  # complete, but too long all the same
        http.parse_head(b"GET / HTTP/1.1\r\nA: " + b"x" * http.MAX_HEAD + b"\r\n\r\n")


def test_a_refused_method_hears_what_is_allowed() -> None:
    with pytest.raises(HttpError) as info:
        http.parse_head(b"PUT / HTTP/1.1\r\n\r\n")
    assert ("Allow", "GET, HEAD") in info.value.response().headers


def test_responses_close_the_connection_and_head_keeps_the_length() -> None:
    response = Response(200, "text/plain", b"hello", (("X-A", "b"),))
    full = http.encode(response, now=0)
    head, _, body = full.partition(b"\r\n\r\n")
    assert body == b"hello"
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Connection: close" in lines and "Content-Length: 5" in lines and "X-A: b" in lines
    assert "Date: Thu, 01 Jan 1970 00:00:00 GMT" in lines
    assert http.encode(response, head_only=True, now=0) == head + b"\r\n\r\n"
