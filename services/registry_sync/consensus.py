"""Consensus by content (pure; the embedder is injected): never by who answered.

1. **Exact voting** when the task has a discrete answer (``discrete=True``, or ``None`` and
   every answer reduces to a short answer): answers are reduced to a key (a number in canonical
   form, yes/no, a choice letter, or the short answer's words) and grouped by equal keys.
2. **Semantic** otherwise: each answer is embedded; two answers are linked when their cosine
   similarity is >= ``link_threshold`` and they do not contradict each other; clusters are
   complete-linkage (every pair inside a cluster is linked). Embeddings group by meaning but
   hardly see a swapped fact ("Canberra" vs "Sydney" scores 0.87 with MiniLM), so a
   contradiction check on *facts* vetoes a link: facts are numbers and capitalised terms, minus
   those every answer shares (the topic) and those in the question; two answers contradict if
   one asserts a fact the other negates ("not Sydney"), or both assert a few facts (<= 3) and
   share none.

The winner is the strictly largest cluster; its medoid (highest mean similarity to the other
members, then key order) is the answer. ``agreement`` = winner size / answers. It abstains when
agreement < ``abstain_below``, when fewer than ``min_agreeing`` answers agree, or on a tie for
largest. Claims are the chosen answer's sentences; each other answer supports a claim when
similar (>= ``claim_threshold``) without contradiction, and contradicts it when they contradict.

Thresholds were set on MiniLM (all-MiniLM-L6-v2): paraphrases of one answer scored 0.62-0.89,
unrelated answers below 0.15.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from libs.events.registry import ClaimData, ClusterData, DissentData

__all__ = [
    "Answer",
    "ConsensusPolicy",
    "ConsensusResult",
    "EmbedFn",
    "consensus",
    "discrete_key",
    "facts",
    "split_sentences",
]

EmbedFn = Callable[[list[str]], npt.NDArray[np.float32]]
"""Texts to L2-normalised float32 vectors, shape (len(texts), dim)."""
SHORT_ANSWER_WORDS: Final = 6
"""An answer of at most this many words counts as a short (discrete) answer."""
MAX_FACTS_FOR_DISJOINT: Final = 3
"""Disjoint fact sets mean contradiction only for answers asserting this few facts."""
_STOP: Final = frozenset((
    "a", "an", "the", "it", "its", "this", "that", "these", "those", "there", "yes", "no", "i",
    "we", "you", "he", "she", "they", "my", "our", "your", "in", "on", "at", "of", "for", "to",
    "and", "or", "but", "if", "so", "as", "is", "are", "was", "were", "be", "not", "answer",
    "final",
))
_NEGATIONS: Final = frozenset({"not", "no", "never", "isn't", "aren't", "wasn't", "nor",
                               "neither", "without"})
_WORD_NUMBERS: Final = {w: str(i) for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve"))}
_TOKEN: Final = re.compile(r"[A-Za-z\u00c0-\u024f][\w.-]*|\d[\d,]*(?:\.\d+)?")
_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_FINAL: Final = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)$", re.I)


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One model's answer."""

    key: str
    text: str


class ConsensusPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of :func:`consensus` (see the module docstring)."""

    link_threshold: float = 0.60
    claim_threshold: float = 0.55
    abstain_below: float = 0.5
    min_agreeing: int = 2
    discrete: bool | None = None


class ConsensusResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome: an answer (``reached``) or an abstention with its reason."""

    reached: bool
    method: Literal["exact", "semantic", "none"]
    agreement: float
    answer_key: str | None = None
    answer: str | None = None
    reason: str | None = None
    clusters: tuple[ClusterData, ...] = ()
    claims: tuple[ClaimData, ...] = ()
    dissent: tuple[DissentData, ...] = ()


def split_sentences(text: str) -> list[str]:
    """Sentences (claims) of an answer; a text without terminators is one claim."""
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def _number(token: str) -> str | None:
    try:
        value = Decimal(token.replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    normal = value.normalize()
    return format(normal, "f") if normal == normal.to_integral() else str(normal)


def facts(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(asserted, negated) facts: numbers and capitalised terms, case-folded."""
    asserted: set[str] = set()
    negated: set[str] = set()
    since_negation = 99
    for token in _TOKEN.findall(text.replace("\u2019", "'")):
        lowered = token.casefold().rstrip(".").removesuffix("'s")
        since_negation = 0 if lowered in _NEGATIONS else since_negation + 1
        fact = _number(token) if token[0].isdigit() else _WORD_NUMBERS.get(lowered)
        if fact is None and token[0].isupper() and lowered not in _STOP:
            fact = lowered
        if fact is not None:
            (negated if since_negation <= 2 else asserted).add(fact)
    return frozenset(asserted - negated), frozenset(negated)


def discrete_key(text: str) -> str | None:
    """The short answer a text reduces to, or None if it is not a short answer."""
    stripped = text.strip()
    match = _FINAL.search(stripped)
    candidate = (match.group(1) if match else stripped).strip().strip("*_`\"'").rstrip(".!")
    words = candidate.split()
    if not words or len(words) > SHORT_ANSWER_WORDS:
        return None
    lowered = [w.casefold().strip(".,;:!?()\"'") for w in words]
    for word in lowered:
        number = _number(word.rstrip("%$€")) if word[:1].isdigit() or word[:1] == "-" else None
        if number is not None:
            return "n:" + number
    if lowered[0] in {"yes", "no", "true", "false"}:
        return "b:" + {"true": "yes", "false": "no"}.get(lowered[0], lowered[0])
    if len(lowered[0]) == 1 and lowered[0].isalpha() and len(lowered) <= 2:
        return "c:" + lowered[0]
    return "w:" + " ".join(w for w in lowered if w and w not in {"the", "a", "an"})


def _contradict(a: tuple[frozenset[str], frozenset[str]],
                b: tuple[frozenset[str], frozenset[str]]) -> bool:
    (asserted_a, negated_a), (asserted_b, negated_b) = a, b
    if asserted_a & negated_b or asserted_b & negated_a:
        return True
    small = 0 < len(asserted_a) <= MAX_FACTS_FOR_DISJOINT >= len(asserted_b) > 0
    return small and not asserted_a & asserted_b


def _topic_free(texts: Sequence[str], question: str | None,
                ) -> list[tuple[frozenset[str], frozenset[str]]]:
    found = [facts(t) for t in texts]
    topic = frozenset.intersection(*(a | n for a, n in found)) if len(found) > 1 else frozenset()
    if question:
        asked, asked_negated = facts(question)
        topic = topic | asked | asked_negated
    return [(a - topic, n - topic) for a, n in found]


def _clusters(links: npt.NDArray[np.bool_]) -> list[list[int]]:
    """Complete-linkage groups: merge while every cross pair is linked (smallest first)."""
    groups = [[i] for i in range(len(links))]
    merged = True
    while merged:
        merged = False
        for x in range(len(groups)):
            for y in range(x + 1, len(groups)):
                if all(links[i, j] for i in groups[x] for j in groups[y]):
                    groups[x] = sorted(groups[x] + groups[y])
                    del groups[y]
                    merged = True
                    break
            if merged:
                break
    return groups


def _cohesion(members: list[int], sims: npt.NDArray[np.float32]) -> float:
    if len(members) < 2:
        return 1.0
    pairs = [float(sims[i, j]) for i in members for j in members if i < j]
    return round(sum(pairs) / len(pairs), 6)


def _abstain(method: Literal["exact", "semantic", "none"], reason: str, agreement: float,
             clusters: tuple[ClusterData, ...] = ()) -> ConsensusResult:
    return ConsensusResult(reached=False, method=method, agreement=agreement, reason=reason,
                           clusters=clusters)


def consensus(answers: Sequence[Answer], embed: EmbedFn, policy: ConsensusPolicy | None = None,
              question: str | None = None) -> ConsensusResult:
    """Agree on one answer by content, or abstain (see the module docstring)."""
    policy = policy or ConsensusPolicy()
    usable = sorted((a for a in answers if a.text.strip()), key=lambda a: a.key)
    if not usable:
        return _abstain("none", "no answers", 0.0)
    keys = [discrete_key(a.text) for a in usable]
    exact = policy.discrete if policy.discrete is not None else all(k is not None for k in keys)
    if exact:
        return _exact(usable, keys, policy)
    return _semantic(usable, embed, policy, question)


def _exact(usable: list[Answer], keys: list[str | None],
           policy: ConsensusPolicy) -> ConsensusResult:
    votes: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        votes.setdefault(key or f"x:{index}", []).append(index)
    groups = sorted(votes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    clusters = tuple(ClusterData(members=tuple(usable[i].key for i in g), cohesion=1.0,
                                 label=label) for label, g in groups)
    return _decide("exact", usable, [g for _, g in groups], clusters, None, policy)


def _semantic(usable: list[Answer], embed: EmbedFn, policy: ConsensusPolicy,
              question: str | None) -> ConsensusResult:
    vectors = embed([a.text for a in usable])
    sims = (vectors @ vectors.T).astype(np.float32)
    found = _topic_free([a.text for a in usable], question)
    n = len(usable)
    links = np.zeros((n, n), dtype=np.bool_)
    for i in range(n):
        for j in range(n):
            links[i, j] = i == j or (sims[i, j] >= policy.link_threshold
                                     and not _contradict(found[i], found[j]))
    groups = sorted(_clusters(links), key=lambda g: (-len(g), -_cohesion(g, sims), g))
    clusters = tuple(ClusterData(members=tuple(usable[i].key for i in g),
                                 cohesion=_cohesion(g, sims)) for g in groups)
    return _decide("semantic", usable, groups, clusters, (vectors, sims, found, embed),
                   policy)


def _decide(method: Literal["exact", "semantic"], usable: list[Answer], groups: list[list[int]],
            clusters: tuple[ClusterData, ...],
            semantic: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                            list[tuple[frozenset[str], frozenset[str]]], EmbedFn] | None,
            policy: ConsensusPolicy) -> ConsensusResult:
    winner = groups[0]
    agreement = round(len(winner) / len(usable), 6)
    if len(winner) < policy.min_agreeing or agreement < policy.abstain_below:
        return _abstain(method, f"agreement {agreement:.2f} below threshold", agreement,
                        clusters)
    if len(groups) > 1 and len(groups[1]) == len(winner):
        return _abstain(method, "tie between clusters", agreement, clusters)
    if semantic is None:
        medoid = winner[0]
        sims = np.eye(len(usable), dtype=np.float32)
        claims: tuple[ClaimData, ...] = (ClaimData(
            text=usable[medoid].text.strip(),
            supported_by=tuple(usable[i].key for i in winner if i != medoid),
            contradicted_by=tuple(a.key for i, a in enumerate(usable) if i not in winner)),)
    else:
        vectors, sims, found, embed = semantic
        medoid = max(winner, key=lambda i: (sum(float(sims[i, j]) for j in winner if j != i),
                                            -i))
        claims = _claims(usable, medoid, vectors, sims, found, embed, policy)
    dissent = tuple(DissentData(key=usable[i].key, similarity=round(float(sims[medoid, i]), 6),
                                text=usable[i].text)
                    for i in range(len(usable)) if i not in winner)
    return ConsensusResult(reached=True, method=method, agreement=agreement,
                           answer_key=usable[medoid].key, answer=usable[medoid].text,
                           clusters=clusters, claims=claims, dissent=dissent)


def _claims(usable: list[Answer], medoid: int, vectors: npt.NDArray[np.float32],
            sims: npt.NDArray[np.float32],
            found: list[tuple[frozenset[str], frozenset[str]]], embed: EmbedFn,
            policy: ConsensusPolicy) -> tuple[ClaimData, ...]:
    sentences = split_sentences(usable[medoid].text)
    others = [i for i in range(len(usable)) if i != medoid]
    if len(sentences) <= 1:
        claim_sims = sims[[medoid]][:, others]
        claim_facts = [found[medoid]]
    else:
        claim_sims = embed(sentences) @ vectors[others].T
        topic_removed = _topic_free([*sentences, *(usable[i].text for i in others)], None)
        claim_facts = topic_removed[: len(sentences)]
    out = []
    for row, text in enumerate(sentences or [usable[medoid].text]):
        supported, contradicted = [], []
        for col, other in enumerate(others):
            asserted, negated = claim_facts[row]
            other_asserted, other_negated = found[other]
            similar = claim_sims[row, col] >= policy.claim_threshold
            if asserted & other_negated or other_asserted & negated or (
                    similar and _contradict(claim_facts[row], found[other])):
                contradicted.append(usable[other].key)
            elif similar:
                supported.append(usable[other].key)
        out.append(ClaimData(text=text, supported_by=tuple(supported),
                             contradicted_by=tuple(contradicted)))
    return tuple(out)
