"""ACME DNS-01 challenges as answers: TXT records at ``_acme-challenge.NAME``, merged with zone data.

A ``ChallengeSet`` holds the challenges live at one moment (the daemon
builds a new one whenever they change, see ``daemon.challenges``); the
engine answers from the one its ``AnswerCache`` was built with, so a cached
answer can never outlive the challenges it was built from.

How they merge with zone data, as gdnsd 3.8.1 answers (measured against it:
``tests/differential/test_acme_differential.py``). A question *matches* when NAME has
challenges and the question is for ``_acme-challenge.NAME`` or for NAME
itself (which thereby exists, as the parent of a name with data would):

* Only answers from a zone's own data: a name at or below a delegation gets
  its referral, a name in no zone REFUSED (the challenge waits for its zone
  to be loaded, through reloads and replaces).
* TXT at ``_acme-challenge.NAME``: the zone's TXT records there, if any
  (wildcard ones too), then one TXT record per challenge, with the TTL
  ``acme_challenge_dns_ttl``.
* A CNAME answer is left alone, TXT questions too: the challenges of the
  CNAME's owner are not served. With CNAME chasing on
  (``experimental_no_chain => false``), a chain that ends inside its zone is
  treated as a question for the name it ends at: that name's challenges
  follow the chain (owned by that name), and make it exist.
* Any other question that has an answer keeps it; one that has none is
  NOERROR (no data) rather than NXDOMAIN, and ANY gets RFC 8482's HINFO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pygdnsd.engine import lookup
from pygdnsd.engine.lookup import QNAME, Decision, Record
from pygdnsd.zones import model, names
from pygdnsd.zones.model import RRset

# The first label of the names challenges are served at, in lowercase wire form.
PREFIX = b"\x0f_acme-challenge"


@dataclass(frozen=True, slots=True)
class Match:
    """A question's challenges: their TXT RRset, and whether it asked for ``_acme-challenge.NAME``."""

    rrset: RRset
    prefixed: bool


@dataclass(frozen=True, slots=True)
class ChallengeSet:
    """Every live challenge by NAME (lowercase wire, without ``_acme-challenge``): its TXT RRset."""

    by_name: Mapping[bytes, RRset] = field(default_factory=dict)

    @classmethod
    def build(cls, challenges: Iterable[tuple[bytes, bytes]], dns_ttl: int) -> ChallengeSet:
        """From (NAME, 43-byte payload) pairs, oldest first: each NAME's payloads in that order."""
        payloads: dict[bytes, list[bytes]] = {}
        for name, payload in challenges:
            payloads.setdefault(name, []).append(bytes((len(payload),)) + payload)
        return cls({name: RRset(model.TXT, dns_ttl, tuple(rdatas)) for name, rdatas in payloads.items()})

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def __len__(self) -> int:
        return sum(len(rrset.rdatas) for rrset in self.by_name.values())

    def matching(self, qname: bytes) -> Match | None:
        """The challenges a question for ``qname`` (lowercase wire) matches, if any."""
        if qname.startswith(PREFIX) and len(qname) > len(PREFIX):
            rrset = self.by_name.get(qname[len(PREFIX) :])
            return None if rrset is None else Match(rrset, True)
        rrset = self.by_name.get(qname)
        return None if rrset is None else Match(rrset, False)


EMPTY = ChallengeSet()


def merge(decision: Decision, live: ChallengeSet, qname: bytes, qtype: int, apex: bytes, chain: bool) -> Decision:
    """``decision`` for ``qname`` in the zone ``apex`` (from zone data alone) with ``live``'s challenges merged in.

    ``chain``: CNAME chasing is on, so a CNAME in the answer was followed.
    """
    if not decision.authoritative or decision.rcode not in (lookup.RCODE_NOERROR, lookup.RCODE_NXDOMAIN):
        return decision  # a referral, or REFUSED
    owner: bytes | int = QNAME
    name = qname
    cnames = [record for record in decision.answer if record.rrset.rtype == model.CNAME]
    if cnames:
        if not chain or qtype in (model.CNAME, model.ANY):
            return decision
        if any(record.rrset.rtype == model.NS for record in decision.authority):
            return decision  # the chain ended at a delegation
        name = cnames[-1].rrset.rdatas[0]
        if not names.is_within(name, apex):
            return decision  # the chain left the zone
        owner = name
    match = live.matching(name)
    if match is None:
        return decision
    if qtype == model.TXT and match.prefixed:
        answer = (*decision.answer, Record(owner, match.rrset))
        return Decision(lookup.RCODE_NOERROR, True, answer, (), decision.additional)
    if len(decision.answer) > len(cnames):
        return decision  # data of the type asked
    if qtype == model.ANY:
        return Decision(lookup.RCODE_NOERROR, True, (Record(QNAME, lookup.ANY_HINFO),))
    return Decision(lookup.RCODE_NOERROR, True, decision.answer, decision.authority, decision.additional)
