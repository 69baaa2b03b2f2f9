"""Turning a DNS response into a comparable value, and describing differences.

What is compared: rcode (with the EDNS extended rcode), opcode, header flags,
question (names exactly as sent on the wire: gdnsd echoes the query's case),
and each section as a multiset of records (owner, type, class, TTL, rdata),
so RRset order (gdnsd rotates A/AAAA) does not matter. The EDNS COOKIE
server cookie is replaced by its length: two servers with different secrets
legitimately differ there.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import DNSRecord

COOKIE = 10
OPT = 41


@dataclass(frozen=True)
class Normalised:
    """A response reduced to what both servers must agree on (None: no response)."""

    header: tuple[tuple[str, int], ...]
    question: tuple[str, ...]
    answer: tuple[str, ...]
    authority: tuple[str, ...]
    additional: tuple[str, ...]
    undecodable: str = ""


SILENT = Normalised((("silent", 1),), (), (), (), ())


def _opt_text(rr: object) -> str:
    options = []
    for opt in rr.rdata:  # type: ignore[attr-defined]
        data: bytes = opt.data
        if opt.code == COOKIE and len(data) > 8:
            shown = f"client={data[:8].hex()} server_len={len(data) - 8}"
        else:
            shown = data.hex()
        options.append(f"{opt.code}:{shown}")
    ttl: int = rr.ttl  # type: ignore[attr-defined]
    return (
        f"OPT name={rr.rname!s} udp={rr.rclass} ext_rcode={ttl >> 24} "  # type: ignore[attr-defined]
        f"version={(ttl >> 16) & 0xFF} flags={ttl & 0xFFFF:#06x} options=[{' '.join(options)}]"
    )


def _rr_text(rr: object) -> str:
    if rr.rtype == OPT:  # type: ignore[attr-defined]
        return _opt_text(rr)
    r = rr  # dnslib's RR
    return f"{r.rname!s} {r.ttl} class={r.rclass} type={r.rtype} {r.rdata.toZone()}"  # type: ignore[attr-defined]


def normalise(response: bytes | None) -> Normalised:
    if response is None:
        return SILENT
    try:
        msg = DNSRecord.parse(response)
    except Exception as exc:  # dnslib raises assorted errors on odd packets
        return Normalised((("unparsable", 1),), (), (), (), (), f"{exc}: {response.hex()}")
    h = msg.header
    header = (
        ("id", h.id),
        ("qr", h.qr),
        ("opcode", h.opcode),
        ("aa", h.aa),
        ("tc", h.tc),
        ("rd", h.rd),
        ("ra", h.ra),
        ("z", h.z),
        ("ad", h.ad),
        ("cd", h.cd),
        ("rcode", h.rcode),
        ("qdcount", h.q),
        ("ancount", h.a),
        ("nscount", h.auth),
        ("arcount", h.ar),
    )
    question = tuple(f"{q.qname!s} class={q.qclass} type={q.qtype}" for q in msg.questions)
    return Normalised(
        header,
        question,
        tuple(sorted(_rr_text(rr) for rr in msg.rr)),
        tuple(sorted(_rr_text(rr) for rr in msg.auth)),
        tuple(sorted(_rr_text(rr) for rr in msg.ar)),
    )


def fold_case(normalised: Normalised) -> Normalised:
    """The same response with every name (and all other text) lowercased."""
    return Normalised(
        normalised.header,
        tuple(text.lower() for text in normalised.question),
        tuple(sorted(text.lower() for text in normalised.answer)),
        tuple(sorted(text.lower() for text in normalised.authority)),
        tuple(sorted(text.lower() for text in normalised.additional)),
        normalised.undecodable,
    )


def describe_difference(label: str, expected: Normalised, actual: Normalised) -> str:
    """A readable account of how ``actual`` differs from ``expected`` ("" if equal)."""
    if expected == actual:
        return ""
    lines = [f"--- {label}"]
    if expected.header != actual.header:
        exp, act = dict(expected.header), dict(actual.header)
        for key in sorted(set(exp) | set(act)):
            if exp.get(key) != act.get(key):
                lines.append(f"  header {key}: reference={exp.get(key)} ours={act.get(key)}")
    for section in ("question", "answer", "authority", "additional", "undecodable"):
        exp_s, act_s = getattr(expected, section), getattr(actual, section)
        if exp_s != act_s:
            lines.append(f"  {section}:")
            if isinstance(exp_s, str):
                lines.append(f"    reference: {exp_s}\n    ours:      {act_s}")
                continue
            for item in exp_s:
                if item not in act_s:
                    lines.append(f"    - {item}")
            for item in act_s:
                if item not in exp_s:
                    lines.append(f"    + {item}")
            if sorted(exp_s) == sorted(act_s):
                lines.append("    (same records, different multiplicity or order)")
    return "\n".join(lines)
