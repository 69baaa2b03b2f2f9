"""The client end of the control socket: what gdnsdctl (and a replacing daemon) speak.

Each connection starts with REQ_INFO, as gdnsdctl does. Soft failures (RESP_LATR
during a replace, or the connection breaking once established) are retried
on a fresh connection about once a second until the client's overall timeout,
unless the client is one-shot; everything else is raised at once.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pygdnsd.control import protocol
from pygdnsd.control.deadline_read import ReadStopped, read_exactly
from pygdnsd.control.protocol import RequestKey, ResponseKey
from pygdnsd.errors import GdnsdError

T = TypeVar("T")

Address = str | tuple[str, int]
RETRY_DELAY = 1.0


class ControlError(GdnsdError):
    """A control request did not succeed."""


class DaemonNotRunning(ControlError):
    """Nothing accepted the connection (socket missing, or refused)."""


class CommsError(ControlError):
    """An established connection broke or spoke nonsense (soft: retried)."""


class TryLater(ControlError):
    """RESP_LATR: a replace is in progress (soft: retried)."""


class RequestDenied(ControlError):
    """RESP_DENY: the daemon refuses this request by policy."""


class RequestFailed(ControlError):
    """RESP_FAIL, RESP_UNK, or another unexpected answer.

    ``reason``: why, when the daemon said (see ``protocol.REASON_REQUESTS``); else empty.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(f"{message}: {reason}" if reason else message)
        self.reason = reason


class ControlTimeout(ControlError):
    """The client's overall time ran out."""


SOFT_FAILURES = (CommsError, TryLater)


@dataclass(frozen=True)
class DaemonStatus:
    """What REQ_INFO tells: the daemon's version and PID."""

    version: tuple[int, int, int]
    pid: int

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)


class ControlClient:
    """Requests to one daemon's control socket.

    ``timeout`` bounds everything the client does, retries included, counted
    from construction (gdnsdctl's ``-t``); ``restart_clock`` starts a new budget.
    ``on_soft_failure`` hears each soft failure before its retry.
    """

    def __init__(
        self,
        address: Address,
        timeout: float,
        *,
        oneshot: bool = False,
        on_soft_failure: Callable[[ControlError], None] | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.oneshot = oneshot
        self.on_soft_failure = on_soft_failure
        self._deadline = time.monotonic() + timeout
        self._sock: socket.socket | None = None
        self._status: DaemonStatus | None = None

    # --- connection ------------------------------------------------------

    @property
    def address_text(self) -> str:
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def restart_clock(self) -> None:
        self._deadline = time.monotonic() + self.timeout

    def connect(self) -> DaemonStatus:
        """Open a connection and exchange REQ_INFO (no retry)."""
        self.close()
        if isinstance(self.address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._remaining())
            sock.connect(self.address)
        except TimeoutError as exc:
            sock.close()
            raise ControlTimeout("Operation timed out") from exc
        except OSError as exc:
            sock.close()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise DaemonNotRunning(
                f"connect() to socket {self.address_text} failed: {reason}"
            ) from exc
        self._sock = sock
        try:
            reply = self._exchange(protocol.info_request(protocol.COMPAT_VERSION))
            self._expect_ack(reply)
        except ControlError:
            self.close()
            raise
        self._status = DaemonStatus(reply.header.version, reply.header.d)
        return self._status

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests --------------------------------------------------------

    def status(self) -> DaemonStatus:
        """Version and PID of the daemon; connecting is not retried (a dead daemon is news)."""
        if self._sock is None:
            return self.connect()

        def ask() -> DaemonStatus:
            reply = self._exchange(protocol.info_request(protocol.COMPAT_VERSION))
            self._expect_ack(reply)
            return DaemonStatus(reply.header.version, reply.header.d)

        return self._with_retries(ask)

    def stats(self) -> bytes:
        """The stats JSON text, exactly as the daemon sent it."""
        return self._with_retries(lambda: self._data_request(RequestKey.STAT))

    def states(self) -> bytes:
        """The monitored-states JSON text, exactly as the daemon sent it."""
        return self._with_retries(lambda: self._data_request(RequestKey.STATE))

    def reload_zones(self) -> None:
        """Returns once the daemon has reloaded its zones and serves the new data.

        A failure raises ``RequestFailed`` with the daemon's reason, if it gave one.
        """
        request = protocol.request_with_reason(RequestKey.ZREL)
        self._with_retries(lambda: self._expect_ack(self._exchange(request)))

    def acme_dns_01(self, challenges: Sequence[protocol.AcmeChallenge]) -> None:
        request = protocol.challenge_request(challenges)
        self._with_retries(lambda: self._expect_ack(self._exchange(request)))

    def acme_dns_01_flush(self) -> None:
        self._with_retries(lambda: self._plain_request(RequestKey.CHALF))

    def stop(self) -> None:
        """Returns once the daemon acknowledged the stop and then exited (EOF)."""
        self._with_retries(lambda: self._request_then_exit(RequestKey.STOP))

    def replace(self) -> DaemonStatus:
        """Replace the daemon and return the new one's status (see request_replace)."""
        self.request_replace()
        # The new daemon owns the socket now; a fresh connection must reach it.
        return self.connect()

    def request_replace(self) -> None:
        """Returns once the old daemon acknowledged a successful replace and then exited."""
        self._with_retries(lambda: self._request_then_exit(RequestKey.REPL))

    # --- mechanics -------------------------------------------------------

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ControlTimeout("Operation timed out")
        return left

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        for _ in range(int(self.timeout / RETRY_DELAY) + 2):
            try:
                if self._sock is None:
                    self.connect()
                return attempt()
            except SOFT_FAILURES as exc:
                self.close()
                if self.oneshot:
                    raise
                if self.on_soft_failure is not None:
                    self.on_soft_failure(exc)
                time.sleep(min(RETRY_DELAY, self._remaining()))
                self._remaining()
        raise ControlTimeout("Operation timed out")

    def _plain_request(self, key: RequestKey) -> None:
        self._expect_ack(self._exchange(protocol.plain_request(key)))

    def _request_then_exit(self, key: RequestKey) -> None:
        """A request whose ACK the daemon follows by exiting: wait for that too."""
        self._plain_request(key)
        self._await_exit()

    def _data_request(self, key: RequestKey) -> bytes:
        reply = self._exchange(protocol.plain_request(key))
        self._expect_ack(reply)
        return reply.payload

    def _exchange(self, request: protocol.Request) -> protocol.Response:
        self._send(request.encode())
        raw = self._recv_exactly(protocol.HEADER_SIZE)
        header = protocol.decode_header(raw)
        try:
            length = protocol.response_payload_length(request.key, header, protocol.reason_limit(request))
        except protocol.ProtocolError as exc:
            raise CommsError(str(exc)) from exc
        payload = self._recv_exactly(length) if length else b""
        return protocol.Response(header, payload)

    @staticmethod
    def _expect_ack(reply: protocol.Response) -> None:
        key = reply.key
        if key == ResponseKey.ACK:
            return
        if key == ResponseKey.LATR:
            raise TryLater("daemon asked to retry later (replace in progress)")
        if key == ResponseKey.DENY:
            raise RequestDenied("Server actively denied request by policy")
        if key == ResponseKey.UNK:
            raise RequestFailed("daemon does not know this request")
        if key == ResponseKey.FAIL:
            raise RequestFailed("daemon reported failure", reply.payload.decode("utf-8", "replace"))
        raise CommsError(f"daemon answered with unexpected {protocol.key_name(key)}")

    def _send(self, data: bytes) -> None:
        sock = self._connected()
        try:
            sock.settimeout(self._remaining())
            sock.sendall(data)
        except TimeoutError as exc:
            raise ControlTimeout("Operation timed out") from exc
        except OSError as exc:
            raise CommsError(f"{len(data)}-byte send() failed: {_reason(exc)}") from exc

    def _recv_exactly(self, size: int) -> bytes:
        sock = self._connected()
        try:
            return read_exactly(sock, size, self._deadline)
        except ReadStopped as stop:
            if stop.timed_out:
                raise ControlTimeout("Operation timed out") from stop
            # Worded as gdnsdctl words it (its errno is 0 at EOF).
            raise CommsError(f"{size}-byte recv() failed with retval {stop.received}: Success") from stop
        except OSError as exc:
            raise CommsError(f"{size}-byte recv() failed: {_reason(exc)}") from exc

    def _await_exit(self) -> None:
        """Read until EOF: the daemon's exit closes the connection it acknowledged on."""
        sock = self._connected()
        for _ in range(1 << 20):
            try:
                sock.settimeout(self._remaining())
                chunk = sock.recv(4096)
            except TimeoutError as exc:
                raise ControlTimeout("Operation timed out") from exc
            except OSError:
                chunk = b""  # a reset from a dying daemon is as good as EOF
            if not chunk:
                self.close()
                return
        raise CommsError("daemon kept sending data after acknowledging")

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise CommsError("not connected")
        return self._sock


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)
