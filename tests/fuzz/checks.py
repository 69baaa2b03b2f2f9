"""What every response to a fuzz packet must satisfy, in process and over the network."""

from __future__ import annotations

from pathlib import Path

from dnslib import DNSRecord

from conftest import prepare_config_dir
from fuzz.mutator import Question, questions_from_zones
from fuzz.strict import Message, parse_message
from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.engine.stats import Stats
from pygdnsd.instance import load
from pygdnsd.zones import names

REPO = Path(__file__).resolve().parent.parent.parent
MAIN_CONFIG = REPO / "tests" / "data" / "diff" / "main"
# The main config leaves max_edns_response at gdnsd's default.
MAX_UDP_RESPONSE = 1232
PLAIN_UDP_LIMIT = 512


def build_responder(work_dir: Path) -> tuple[Responder, list[Question]]:
    """The test config's Responder, built as the daemon builds it, and questions for its zones."""
    config_dir = prepare_config_dir(MAIN_CONFIG, work_dir, port=53)
    loaded = load(config_dir)
    secret = (config_dir / "cookie.key").read_bytes()
    responder = Responder(loaded.zones, EngineSettings.from_config(loaded.config, secret), Stats())
    nodes = [
        (name, rrsets.keys())
        for zone in loaded.zones.zones.values()
        for name, rrsets in zone.nodes.items()
        # Out-of-zone glue is stored with the zone but answered REFUSED.
        if names.is_within(name, zone.apex)
    ]
    return responder, questions_from_zones(sorted(nodes, key=lambda node: node[0]))


def for_dnslib(response: bytes, message: Message) -> bytes:
    """``response`` with every non-UTF-8 label's bytes replaced by ``x``.

    DNS labels are binary and the server rightly echoes a query's name as
    sent, but dnslib refuses labels that are not UTF-8 (``decode_name``).
    Same-length replacement keeps every offset, pointer and length intact, so
    dnslib still checks the message's whole structure.
    """
    out = None
    for start, end in message.label_spans:
        try:
            response[start:end].decode()
        except UnicodeDecodeError:
            if out is None:
                out = bytearray(response)
            out[start:end] = b"x" * (end - start)
    return response if out is None else bytes(out)


def check_response(response: bytes, tcp: bool, query: bytes | None = None) -> Message:
    """Parse ``response`` strictly and with dnslib; check it against ``query`` when known.

    Raises AssertionError (or MalformedMessage) naming what is wrong.
    """
    message = parse_message(response)
    DNSRecord.parse(for_dnslib(response, message))
    assert message.qr, "QR bit clear in a response"
    if not tcp:
        assert len(response) <= MAX_UDP_RESPONSE, f"UDP response of {len(response)} bytes"
        if message.opt is None:
            assert len(response) <= PLAIN_UDP_LIMIT, f"UDP response without EDNS of {len(response)} bytes"
    if query is not None:
        assert response[:2] == query[:2], "response ID differs from the query's"
        # The question is echoed from the query byte for byte (its case kept).
        assert response[12 : message.question_end] == query[12 : message.question_end], (
            "question not echoed from the query"
        )
    return message
