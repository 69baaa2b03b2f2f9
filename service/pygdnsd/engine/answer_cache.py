"""The caches of prepared answers, and of whole UDP responses, for one ``ZoneSet``.

* ``by_question``: lowercased qname + qtype -> prepared answer, for repeated
  questions (the common case).
* ``by_tail``: (decision content, the question suffixes the tail may point
  at and where they sit) -> prepared answer. Questions that reach the same
  records share a tail unless compression makes them differ: every A answer
  of an RRset shares one, and a flood of random names in a zone shares a few
  NXDOMAIN tails, so neither rebuilds a response.
* ``by_rrset``, ``layouts``: what ``by_tail`` is looked up with (see
  ``AnswerCache``).
* ``answers_v4``/``answers_v6``: whole UDP responses by query bytes.
* ``dynamic_questions``, ``dynamic_answers``: plugin (DYNA/DYNC) answers,
  see ``add_dynamic_answer``.
* ``subnet_responses``: whole UDP responses to client-subnet queries
  answered from remembered plugin results (``SubnetResponses``).
* ``compiled``: the compiled UDP fast path's copies of prepared answers
  (``transport/_fastpath.c``, made there on first use; ``None`` until then).

Every cache belongs to one ``ZoneSet`` and one ``ChallengeSet`` and is
replaced with either (``Responder.set_zones``, ``Responder.set_challenges``),
so nothing precomputed outlives a reload or a challenge's arrival, flush or
expiry. The
per-packet path reads the caches directly (``cache.by_question[hash(key) &
PART_MASK].get(key)``): a method call there would cost CPU on every query.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from pygdnsd.engine.challenges import EMPTY, ChallengeSet
from pygdnsd.engine.lookup import Location
from pygdnsd.engine.prepared import Prepared
from pygdnsd.engine.query import LOWER
from pygdnsd.plugins.result import DynamicResult
from pygdnsd.zones.model import DynamicRRset, ZoneSet

# Every cache is split into PARTS dicts by key hash. A dict grows by copying
# itself whole, and a full cache is emptied by freeing every entry: at
# 100,000-200,000 entries either stalled every query for 5-20 ms (measured),
# and a part does 1/PARTS of that work at a time. Bounds apply per part.
PARTS = 64
PART_MASK = PARTS - 1

# Bounds the prepared answers cached by question and by tail.
MAX_QUESTIONS = 200_000
# Bounds the memory of whole responses: about 300 bytes each, so at most
# ~60 MB per client family; cleared when full, like the question cache.
MAX_REMEMBERED = 200_000

# Bounds the plugin answers: dynamic names are few, but a wildcard DYNA has as
# many as are asked under it. Remembered results: geoip's are resources x
# datacenter lists x scopes, and a state change makes new ones.
MAX_DYNAMIC = 50_000
MAX_RESULTS = 10_000

# Markers heading a layout (see ``AnswerCache.layouts``); never a wire name, which ends in b"\x00".
INTERNAL = b"internal"
EXTERNAL = b"external"

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
# Key ``k`` lives in part ``hash(k) & PART_MASK``.
Parts = list[dict[K, V]]


def new_parts(make: Callable[[], dict[K, V]]) -> Parts[K, V]:
    """An empty cache: PARTS dicts, each made by ``make``."""
    return [make() for _ in range(PARTS)]


def per_part(bound: int) -> int:
    """How many entries one part of a cache bounded by ``bound`` holds at most."""
    return max(bound // PARTS, 1)


def store(parts: Parts[K, V], key: K, value: V, part_bound: int) -> None:
    """Cache ``value`` under ``key``, first emptying its part if that holds ``part_bound`` entries."""
    part = parts[hash(key) & PART_MASK]
    if len(part) >= part_bound:
        part.clear()
    part[key] = value


def _frozen_with_the_zones() -> dict[Any, Any]:
    """An empty cache that the freeze after loading (``daemon.gc_freeze``) exempts from collections.

    A dict holding only atoms is not tracked by the collector (an empty one
    from the start; a full collection untracks one), so ``gc.freeze`` would
    miss it, and the first tuple cached in it would track it as a young
    object: every later full collection then walked its hundreds of
    thousands of entries (measured: 30-90 ms stalls while the caches fill).
    This one holds a list under ``None``, a key no query's key equals, so it
    stays tracked until frozen, and frozen, it stays out of collections
    however it fills or is cleared.
    """
    return {None: []}


@dataclass(frozen=True, slots=True)
class DynamicQuestion:
    """A question a plugin answers: where its name lies and the DYNA/DYNC record there."""

    where: Location
    record: DynamicRRset


# id(result) -> (that result, held so the id stays its own; question key -> prepared answer)
DynamicAnswers = dict[int, tuple[DynamicResult, dict[bytes, Prepared]]]


class SubnetResponses:
    """Whole UDP responses to client-subnet queries, while the plugins' ``changes`` count holds.

    Keyed by the client's address and the query minus its ID (the
    question's case, the option's subnet, DO and the UDP size included):
    only answers from results a plugin remembers (``DynamicResult.remembered``)
    are kept, which depend on nothing else but the monitored states and the
    plugins' data, and any change of those bumps ``changes``. A new count
    gets a new store (``AnswerCache.subnet_responses_for``); a response
    computed while the count moved lands in the store it began with, which
    nobody reads any more. Bytes only, like ``answers_v4``: never tracked
    by the cyclic collector.
    """

    __slots__ = ("changes", "parts")

    def __init__(self, changes: int) -> None:
        self.changes = changes
        self.parts: Parts[bytes, bytes] = new_parts(dict)


class AnswerCache:
    """A ZoneSet and the live ACME challenges, with the caches built from them; replaced as a whole."""

    __slots__ = (
        "_dynamic_part_bound",
        "_question_part_bound",
        "_remembered_part_bound",
        "answers_v4",
        "answers_v6",
        "by_question",
        "by_rrset",
        "by_tail",
        "challenges",
        "compiled",
        "dynamic_answers",
        "dynamic_questions",
        "layouts",
        "subnet_responses",
        "zones",
    )

    def __init__(self, zones: ZoneSet, challenges: ChallengeSet = EMPTY) -> None:
        self.zones = zones
        self.challenges = challenges
        # Read once here, off the per-query path.
        self._question_part_bound = per_part(MAX_QUESTIONS)
        self._remembered_part_bound = per_part(MAX_REMEMBERED)
        # Tuple-valued caches: see ``_frozen_with_the_zones``.
        # Lowercased qname + qtype -> Prepared.
        self.by_question: Parts[bytes, Prepared] = new_parts(_frozen_with_the_zones)
        # ``tail_key`` -> Prepared.
        self.by_tail: Parts[tuple[object, ...], Prepared] = new_parts(_frozen_with_the_zones)
        # id(RRset) -> its answer, for RRsets with no names to compress.
        self.by_rrset: Parts[int, Prepared] = new_parts(_frozen_with_the_zones)
        # Decision content -> whether any build of its tail pointed into the
        # tail itself (``INTERNAL``/``EXTERNAL``), then the names its tail
        # may compress against.
        self.layouts: Parts[tuple[object, ...], tuple[bytes, ...]] = new_parts(_frozen_with_the_zones)
        # Whole UDP responses: the query minus its ID -> the response minus
        # its ID (see ``remember``). Per client family, since IPv4 and IPv6
        # may have different size limits. Bytes only, so the cyclic collector
        # never tracks these dicts (see ``prepared.Prepared``).
        self.answers_v4: Parts[bytes, bytes] = new_parts(dict)
        self.answers_v6: Parts[bytes, bytes] = new_parts(dict)
        # Plugin answers (see ``add_dynamic_answer``): question key -> where
        # and what answers it; by result, by question key: the prepared answer.
        self._dynamic_part_bound = per_part(MAX_DYNAMIC)
        self.dynamic_questions: Parts[bytes, DynamicQuestion] = new_parts(dict)
        self.dynamic_answers: DynamicAnswers = {}
        self.subnet_responses = SubnetResponses(-1)
        # The compiled fast path's table (no Python objects inside: never tracked).
        self.compiled: object = None

    def add_question(self, key: bytes, prepared: Prepared) -> None:
        """Cache the answer to a question (lowercased qname + qtype)."""
        store(self.by_question, key, prepared, self._question_part_bound)

    def add_tail(self, key: tuple[object, ...], prepared: Prepared) -> None:
        """Cache a tail under its ``tail_key``."""
        store(self.by_tail, key, prepared, self._question_part_bound)

    def add_dynamic_question(self, key: bytes, question: DynamicQuestion) -> None:
        """Remember that a plugin answers this question (lowercased qname + qtype), and where."""
        store(self.dynamic_questions, key, question, self._dynamic_part_bound)

    def add_dynamic_answer(self, result: DynamicResult, key: bytes, prepared: Prepared) -> None:
        """Cache the answer the plugin's ``result`` gives question ``key``.

        A plugin answer depends on the client, the monitored states and
        chance only through the plugin's result: for one question, a result
        gives the same prepared answer every time, the client-subnet scope
        included (it is part of the result). Only results the plugin hands
        out again belong here (``DynamicResult.remembered``: geoip's, one
        per resource, datacenter list and scope); others (weighted, reflect)
        would only churn the memory. Kept by the result's identity, not its
        value: hashing a result twice a query cost 0.3 us (measured), and
        the entry holds the result, so no other object can take its id.
        """
        found = self.dynamic_answers.get(id(result))
        if found is None or found[0] is not result:
            if len(self.dynamic_answers) >= MAX_RESULTS:
                self.dynamic_answers.clear()
            found = self.dynamic_answers[id(result)] = (result, {})
        if len(found[1]) >= MAX_DYNAMIC:
            found[1].clear()
        found[1][key] = prepared

    def subnet_responses_for(self, changes: int) -> SubnetResponses:
        """The store of responses valid at the plugins' ``changes`` count (a new one if it moved)."""
        found = self.subnet_responses
        if found.changes != changes:
            found = self.subnet_responses = SubnetResponses(changes)
        return found

    def remember_subnet_response(self, responses: SubnetResponses, key: bytes, remembered: bytes) -> None:
        """Keep a UDP response to a client-subnet query (``key``: client address + query minus ID).

        ``remembered`` is as ``responder.remembered_subnet_response`` lays it
        out. A full part drops every other entry, oldest first, not all of
        them (``store``): (client network, name) pairs come round again
        after many others, and when a part holds fewer than come round, a
        part emptied whenever full never held one long enough to serve it
        again. Measured on the bench ``geoip`` queries (200,000 pairs, in a
        loop): 50.6% built again in every loop when emptied, 20.1% thinned.
        """
        part = responses.parts[hash(key) & PART_MASK]
        if len(part) >= self._remembered_part_bound:
            for i, old in enumerate(list(part)):
                if i & 1:
                    del part[old]
        part[key] = remembered

    def remember(self, query: bytes, qend: int, response: bytes, v6: bool) -> None:
        """Keep a fast-path UDP response for the same query bytes (from any ID).

        Only for answers every client gets alike: a tail shared through the
        caches and not rotated. Serving it again counts what building it
        counted, read back from the query and response bytes (the rcode, TC,
        size; EDNS and DO from the query). Names with capitals are left out:
        resolvers that randomise case (0x20) make every such query unique,
        and remembering them would only churn the memory.
        """
        if query[12:qend].translate(LOWER) != query[12:qend]:
            return
        store(self.answers_v6 if v6 else self.answers_v4, query[2:], response[2:], self._remembered_part_bound)


def tail_key(content: tuple[object, ...], qname: bytes, layout: tuple[bytes, ...]) -> tuple[object, ...]:
    """What a tail of ``content`` depends on for this qname (flat, see ``prepared.Prepared``).

    ``layout`` is ``INTERNAL`` or ``EXTERNAL`` then the names the tail
    may compress against. Compression can only point at question suffixes
    among those, so they (and their offsets) are part of the key; pointers
    into the tail itself move with the question's length, which then joins
    the key too. ``content`` has its own lengths, so the key reads back
    unambiguously: content, the length or -1, then (suffix, offset) pairs.
    """
    key: list[object] = [*content, len(qname) if layout[0] == INTERNAL else -1]
    pos = 0
    while qname[pos]:
        suffix = qname[pos:]
        if suffix in layout:
            key += (suffix, pos)
        pos += qname[pos] + 1
    return tuple(key)
