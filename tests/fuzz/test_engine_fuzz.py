"""In-process fuzz of the engine: 100,000+ hostile packets straight into Responder.respond.

Whatever the packet, ``respond`` must not raise, and whatever it returns
must be a well-formed response to that query (strict parser and dnslib;
the query's ID, QR set, the question echoed, UDP size limits kept).

UDP packets take the path the server takes in this process
(``transport.fastpath``): with the compiled fast path, its
``FastAnswers.answer`` first, then ``respond`` for what it leaves;
with ``PYGDNSD_PURE=1``, ``respond`` alone.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from pathlib import Path

from fuzz.checks import build_responder, check_response
from fuzz.mutator import PacketFuzzer
from fuzz.seeding import fuzz_seed
from pygdnsd.engine.tcp_shape import TcpShape
from pygdnsd.transport import fastpath

PACKETS = 110_000
MAX_REPORTED = 10
CLIENTS = (b"\x7f\x00\x00\x01", b"\x00" * 15 + b"\x01", b"\xc0\x00\x02\x07")
# The states of a TCP connection: open, closing, in a DSO session, padded (tcp_pad).
SHAPES = (
    TcpShape.of(37, False),
    TcpShape.of(37, False, closing=True),
    TcpShape.of(37, False, dso=True),
    TcpShape.of(15, True),
    TcpShape.of(15, True, dso=True),
)
NOERROR, NXDOMAIN = 0, 3


def _describe(seed: int, index: int, kind: str, packet: bytes, tcp: bool, problem: str) -> str:
    return (
        f"seed {seed} packet #{index} ({kind}, {'tcp' if tcp else 'udp'}): {packet.hex()}\n"
        f"  {problem}"
    )


def test_engine_survives_and_answers_well_formed(tmp_path: Path) -> None:
    seed = fuzz_seed()
    responder, questions = build_responder(tmp_path)
    compiled = fastpath.chosen().module
    fast = responder.udp_fast_path(compiled) if compiled is not None else None
    fuzzer = PacketFuzzer(seed, questions)
    in_compiled = 0
    failures: list[str] = []
    failure_count = 0
    answered: Counter[str] = Counter()
    started = time.monotonic()
    for index, (kind, packet) in enumerate(fuzzer.cases(PACKETS)):
        tcp = index % 4 == 0
        client = CLIENTS[index % len(CLIENTS)]
        try:
            protocol_errors = responder.stats.tcp["dso_protoerr"]
            response = None
            if fast is not None and not tcp:
                response = fast.answer(packet, len(client) == 16)
                in_compiled += response is not None
            if response is None:
                response = responder.respond(packet, client, tcp, SHAPES[index % len(SHAPES)] if tcp else None)
            if len(packet) < 12 or packet[2] & 0x80:
                # Not a query (too short for a header, or a response): never answered.
                assert response is None, "answered a packet that is not a query"
            if response is not None:
                answered[kind] += 1
                message = check_response(response, tcp, packet)
                if kind == "valid":
                    assert message.rcode in (NOERROR, NXDOMAIN), f"valid query got rcode {message.rcode}"
            elif kind == "valid" and responder.stats.tcp["dso_protoerr"] == protocol_errors:
                # (An edns-tcp-keepalive option inside a DSO session is a protocol error: no answer.)
                raise AssertionError("valid query got no response")
        except Exception as problem:
            failure_count += 1
            if len(failures) < MAX_REPORTED:
                detail = "".join(traceback.format_exception_only(problem)).strip()
                failures.append(_describe(seed, index, kind, packet, tcp, detail))
    elapsed = time.monotonic() - started
    print(f"{PACKETS} packets in {elapsed:.1f} s; answered by kind: {dict(answered)}")
    assert not failures, f"{failure_count} of {PACKETS} packets failed:\n" + "\n".join(failures)
    # The stream must reach past the header checks: real answers, not only errors.
    if fast is not None:
        print(f"{in_compiled} answered by the compiled fast path")
        assert in_compiled > PACKETS // 40  # repeated valid questions, over UDP
    counters = responder.stats.dns.values
    assert counters["noerror"] > PACKETS // 20
    assert counters["nxdomain"] > 0 and counters["formerr"] > 0 and counters["dropped"] > 0
    assert counters["edns"] > 0 and counters["badvers"] > 0
