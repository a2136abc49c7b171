"""Fusing the rankings of the retrieval sides into one. Pure functions.

**Normalised-score fusion** (the default): each side's scores (cosine similarity, BM25) are
min-max normalised over the side's own candidates, so its best candidate scores 1 and its
worst 0, and a document's fused score is the weighted sum over the sides that found it
(``dense_weight`` 0.4, ``lexical_weight`` 0.6 by default), divided by the weights of the sides
searched so a one-sided search also scores in [0, 1]. Unlike reciprocal rank fusion it keeps
*how much* better a side's first candidate is than its fortieth: with RRF (k = 60) a turn ranked
1st by one side loses to noise ranked ~45th by both (1/61 < 2/106). Each side contributes a
fixed number of candidates whatever ``k`` is, so a top-5 is the first five of the top-10.

:func:`reciprocal_rank_fusion` stays for comparison (the retrieval benchmark prints both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["RRF_K", "FusedHit", "normalised", "reciprocal_rank_fusion", "score_fusion"]

RRF_K: Final = 60
"""The constant of the original RRF paper (Cormack et al., 2009)."""

Ranking = Sequence[tuple[str, float]]
"""``(doc_id, score)`` pairs, best first."""


@dataclass(frozen=True, slots=True)
class FusedHit:
    """A document's fused score, its 1-based rank in each ranking that contains it, and its
    raw score there."""

    doc_id: str
    score: float
    ranks: dict[str, int]
    scores: dict[str, float] = field(default_factory=dict)


def normalised(ranking: Ranking) -> dict[str, float]:
    """Min-max normalised scores of one ranking (first occurrence of an id counts): the best
    candidate 1.0, the worst 0.0; all 1.0 when every score is equal."""
    first: dict[str, float] = {}
    for doc_id, score in ranking:
        first.setdefault(doc_id, score)
    if not first:
        return {}
    high, low = max(first.values()), min(first.values())
    spread = high - low
    if not spread > 0.0:  # equal scores (or NaN): no candidate is preferred
        return dict.fromkeys(first, 1.0)
    return {doc_id: (score - low) / spread for doc_id, score in first.items()}


def score_fusion(rankings: Mapping[str, Ranking], weights: Mapping[str, float],
                 limit: int | None = None) -> list[FusedHit]:
    """Fuse named rankings by weighted normalised score, best first.

    Ties are broken by the best single rank, then by id, so the order is deterministic.
    """
    total = sum(weights.get(side, 0.0) for side in rankings) or 1.0
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    raw: dict[str, dict[str, float]] = {}
    for side, ranking in rankings.items():
        weight = weights.get(side, 0.0) / total
        norm = normalised(ranking)
        position = 0
        for doc_id, score in ranking:
            if side in ranks.get(doc_id, {}):
                continue  # a ranking lists each document once; ignore repeats
            position += 1
            scores[doc_id] = scores.get(doc_id, 0.0) + weight * norm[doc_id]
            ranks.setdefault(doc_id, {})[side] = position
            raw.setdefault(doc_id, {})[side] = score
    fused = [FusedHit(doc_id, score, ranks[doc_id], raw[doc_id])
             for doc_id, score in scores.items()]
    fused.sort(key=lambda hit: (-hit.score, min(hit.ranks.values()), hit.doc_id))
    return fused if limit is None else fused[:limit]


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], k: int = RRF_K, limit: int | None = None
) -> list[FusedHit]:
    """Fuse named rankings (best first) by ``sum(1 / (k + rank))``; deterministic ties."""
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for side, ranking in rankings.items():
        seen: set[str] = set()
        for position, doc_id in enumerate(ranking, start=1):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + position)
            ranks.setdefault(doc_id, {})[side] = position
    fused = [FusedHit(doc_id, score, ranks[doc_id]) for doc_id, score in scores.items()]
    fused.sort(key=lambda hit: (-hit.score, min(hit.ranks.values()), hit.doc_id))
    return fused if limit is None else fused[:limit]
