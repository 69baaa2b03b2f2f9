"""What the transports need from the engine: ``engine.responder.Responder`` fits it."""

from __future__ import annotations

from typing import Protocol

from pygdnsd.engine.tcp_shape import TcpShape


class Answerer(Protocol):
    def respond(
        self, query: bytes, client_ip: bytes, tcp: bool, shape: TcpShape | None = None
    ) -> bytes | None: ...
