"""What the transports need from the engine: ``engine.responder.Responder`` fits both."""

from __future__ import annotations

from typing import Protocol

from pygdnsd.engine.challenges import ChallengeSet
from pygdnsd.engine.tcp_shape import TcpShape


class Answerer(Protocol):
    def respond(
        self, query: bytes, client_ip: bytes, tcp: bool, shape: TcpShape | None = None
    ) -> bytes | None: ...


class ChallengeAnswerer(Answerer, Protocol):
    """An answerer whose live ACME challenges can be replaced: what a worker process serves."""

    def set_challenges(self, live: ChallengeSet) -> None: ...
