"""A read-only ``tcp_control`` listener must answer byte streams exactly as Debian's gdnsd 3.8.1 does.

Each probe is a byte stream sent on a fresh connection: every request key as
a bare header, a challenge with its data (denied: gdnsd reads the data as
more headers), junk, partial headers, and seeded random streams. The answers
are compared response by response, with what legitimately differs taken
out: the PID in an INFO answer and the JSON of STAT/STATE answers (only
that data came, of the announced length). Whether the server closed the
connection, or answered everything and waits for more, is compared too.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ONE_ZONE_CONFIG, REAL_GDNSD, ServerProcess, free_port
from daemon_support import zone_text
from pygdnsd.control import protocol
from pygdnsd.control.protocol import RequestKey

# Loopback servers answer at once: this long without a byte is a server that stopped answering.
TIMEOUT = 5.0
PAYLOAD = b"0123456789012345678901234567890123456789012"


@dataclass(frozen=True)
class Probe:
    label: str
    data: bytes


def probes() -> list[Probe]:
    info = protocol.info_request(protocol.COMPAT_VERSION).encode()
    # Each key, then INFO: is the connection still served after the answer?
    found = [Probe(f"key {key:#04x}", bytes([key]) + bytes(7) + info) for key in range(256)]
    challenge = protocol.challenge_request([protocol.AcmeChallenge(b"\x07example\x03com\x00", PAYLOAD)])
    found += [
        Probe("challenge with data", challenge.encode()),
        Probe("challenge, huge sizes", b"C\0\0\x01" + struct.pack("=I", 0xFFFFFFFF) + info),
        Probe("http request", b"GET / HTTP/1.0\r\n\r\n"),
        Probe("partial header", b"I\0"),
        Probe("unknown key then info", b"zzzzzzzz" + info),
        Probe(
            "stop, reload, replace, flush, takeover, then info",
            b"".join(bytes([key]) + bytes(7) for key in b"XZRc12T") + info,
        ),
        Probe("stats and states pipelined", b"S" + bytes(7) + b"E" + bytes(7) + info),
    ]
    rng = random.Random(3_8_1)
    for number in range(40):
        size = rng.randrange(1, 200)
        data = bytearray(rng.randbytes(size))
        for pos in range(0, size, 8):  # some headers the listener serves, among the junk
            if rng.random() < 0.3:
                data[pos] = rng.choice(b"ISE")
        found.append(Probe(f"random stream {number} ({size} bytes)", bytes(data)))
    return found


def exchange(port: int, data: bytes) -> tuple[bytes, str]:
    """What the server sends back for ``data``, and how the exchange ended.

    "open": every whole header was answered and the stream ended on a header
    boundary (the server waits for more); "closed": the server closed;
    "silent": neither, within the timeout.
    """
    received = b""
    whole = len(data) % protocol.HEADER_SIZE == 0
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        for _ in range(10_000):
            if whole and parse(data, received)[1]:
                return received, "open"
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, "silent"
            except ConnectionResetError:
                return received, "closed"
            if not chunk:
                return received, "closed"
            received += chunk
    raise AssertionError("the server never stopped sending")


def parse(sent: bytes, received: bytes) -> tuple[list[str], bool]:
    """One entry per response, matched to the header it answers; and whether every header was answered."""
    out: list[str] = []
    requests = [sent[pos] for pos in range(0, len(sent) - protocol.HEADER_SIZE + 1, protocol.HEADER_SIZE)]
    pos = 0
    for request_key in requests:
        if pos + protocol.HEADER_SIZE > len(received):
            return out, False
        header = protocol.decode_header(received[pos : pos + protocol.HEADER_SIZE])
        pos += protocol.HEADER_SIZE
        if header.key == protocol.ResponseKey.ACK and request_key in (RequestKey.STAT, RequestKey.STATE):
            if pos + header.d > len(received):
                return out, False
            pos += header.d
            out.append("ACK + its JSON")
        elif header.key == protocol.ResponseKey.ACK and request_key == RequestKey.INFO:
            out.append(f"ACK version {header.version}")
        else:
            out.append(f"{protocol.key_name(header.key)} v={header.version} d={header.d}")
    if pos < len(received):
        out.append(f"{len(received) - pos} more bytes")
    return out, True


def normalised(sent: bytes, received: bytes, ending: str) -> list[str]:
    return [*parse(sent, received)[0], ending]


def source_dir(root: Path, control_port: int) -> Path:
    (root / "zones").mkdir(parents=True)
    config = ONE_ZONE_CONFIG.replace("}\n", f"  tcp_control => 127.0.0.1:{control_port}\n}}\n")
    (root / "config").write_text(config)
    (root / "zones" / "example.com").write_text(zone_text())
    return root


@pytest.fixture(scope="module")
def control_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    assert REAL_GDNSD.exists(), f"{REAL_GDNSD} missing: run dev/bootstrap"
    base = tmp_path_factory.mktemp("tcpctl")
    ports = free_port(), free_port()
    with ServerProcess("gdnsd", source_dir(base / "ref-src", ports[0]), base / "ref"), \
            ServerProcess("pygdnsd", source_dir(base / "ours-src", ports[1]), base / "ours"):
        yield ports


def test_a_read_only_listener_answers_like_gdnsd(control_ports: tuple[int, int]) -> None:
    reference, ours = control_ports
    found = []
    for probe in probes():
        expected = normalised(probe.data, *exchange(reference, probe.data))
        actual = normalised(probe.data, *exchange(ours, probe.data))
        if expected != actual:
            found.append(f"{probe.label}: gdnsd {expected}, pygdnsd {actual}")
    assert not found, "\n".join(found)


def test_the_probes_see_every_kind_of_answer(control_ports: tuple[int, int]) -> None:
    """The comparison means something only if gdnsd's answers cover ACK, DENY, open and closed."""
    reference, _ = control_ports
    seen = set()
    for probe in probes():
        seen.update(entry.split(" ")[0] for entry in normalised(probe.data, *exchange(reference, probe.data)))
    assert {"ACK", "RESP_DENY", "open", "closed"} <= seen, seen
