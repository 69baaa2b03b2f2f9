# Types of the compiled UDP fast path (_fastpath.c).
from collections.abc import Callable

class FastAnswers:
    def __init__(
        self,
        responder: object,
        opt_plain: bytes,
        opt_do: bytes,
        limit_v4: int,
        limit_v6: int,
        nocookie: int,
        part_mask: int,
        rcode_names: dict[int, str],
        dns_counts: dict[str, int],
        udp_counts: dict[str, int],
    ) -> None: ...
    def answer(self, query: bytes, v6: bool) -> bytes | None: ...

class Batch:
    size: int
    control_space: int
    def __init__(
        self,
        fd: int,
        family: int,
        size: int,
        max_query: int,
        send_space: int,
        control_space: int = 0,
        fast: FastAnswers | None = None,
    ) -> None: ...
    def receive(self) -> int: ...
    def answer(
        self,
        count: int,
        respond: Callable[[bytes, bytes, bool], bytes | None],
        failed: Callable[[bytes, BaseException], None],
    ) -> int: ...
    def serve(
        self,
        wake_fd: int,
        threads: object,
        respond: Callable[[bytes, bytes, bool], bytes | None],
        failed: Callable[[bytes, BaseException], None],
        counts: dict[str, int],
    ) -> None: ...
