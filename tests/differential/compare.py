"""Running the query set against two servers and collecting the differences."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable

from conftest import REAL_GDNSDCTL, ServerProcess
from differential.normalise import describe_difference, fold_case, normalise
from differential.queries import Probe
from differential.wire import ask

# Loopback servers answer at once; a probe that gets nothing for this long is
# taken as deliberately dropped.
REPLY_TIMEOUT = 1.0


def differences(
    reference: tuple[str, int],
    ours: tuple[str, int],
    probes: Iterable[Probe],
    chain_regardless_of_case: bool = False,
) -> list[str]:
    """One readable entry per probe whose normalised responses differ.

    ``chain_regardless_of_case`` applies our deliberate difference (README.rst):
    with ``experimental_no_chain => false`` gdnsd chains CNAMEs only when the
    qname's zone part is lowercase. For a mixed-case probe, the reference is
    then gdnsd's answer to the lowercased question, compared case-insensitively.
    """
    found = []
    for probe in probes:
        reference_packet = probe.packet
        fold = chain_regardless_of_case and lowercase_question(probe.packet) != probe.packet
        if fold:
            reference_packet = lowercase_question(probe.packet)
        expected = normalise(ask(reference, reference_packet, probe.tcp, REPLY_TIMEOUT))
        first = ask(ours, probe.packet, probe.tcp, REPLY_TIMEOUT)
        answers = [("", first)]
        if not probe.tcp and first is not None:
            # Asked again: a question answered before is what pygdnsd's
            # compiled UDP fast path answers (from the engine's prepared
            # answer), so both of its paths are compared with gdnsd.
            answers.append((", asked again", ask(ours, probe.packet, probe.tcp, REPLY_TIMEOUT)))
        for again, response in answers:
            actual = normalise(response)
            wanted = expected
            if fold:
                wanted, actual = fold_case(expected), fold_case(actual)
            diff = describe_difference(f"{probe.label} ({'tcp' if probe.tcp else 'udp'}{again})", wanted, actual)
            if diff:
                found.append(diff)
    return found


def lowercase_question(packet: bytes) -> bytes:
    """``packet`` with its first question name lowercased (unchanged if it does not parse)."""
    pos = 12
    out = bytearray(packet)
    while pos < len(packet):
        length = packet[pos]
        if length == 0 or length > 63 or pos + 1 + length > len(packet):
            break
        out[pos + 1 : pos + 1 + length] = packet[pos + 1 : pos + 1 + length].lower()
        pos += length + 1
    return bytes(out)


def report(found: list[str], total: int, limit: int = 40) -> str:
    shown = "\n".join(found[:limit])
    more = f"\n... and {len(found) - limit} more" if len(found) > limit else ""
    return f"{len(found)} of {total} probes differ:\n{shown}{more}"


def counters(server: ServerProcess) -> dict[str, int]:
    """Every counter of ``gdnsdctl stats``, flat (``stats.noerror``, ``tcp.reqs``...), asked with Debian's gdnsdctl."""
    assert server.config_dir is not None
    out = subprocess.run(
        [str(REAL_GDNSDCTL), "-c", str(server.config_dir), "stats"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    found = json.loads(out)
    return {f"{group}.{name}": value for group in ("stats", "udp", "tcp") for name, value in found[group].items()}
