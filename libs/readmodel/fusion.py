"""Reciprocal rank fusion and query-term sanitising for hybrid search. Pure functions.

RRF (Cormack et al., 2009) scores a document ``sum(1 / (k + rank))`` over the rankings that
contain it. It needs no score calibration between sides (cosine distances and BM25 scores live
on different scales), which is why it is the fusion of choice here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["RRF_K", "FusedHit", "or_tsquery", "query_terms", "reciprocal_rank_fusion"]

RRF_K: Final = 60
"""The constant of the original paper; dampens the influence of the very top ranks."""
MAX_TERMS: Final = 64
MAX_TERM_CHARS: Final = 64

_TOKEN: Final = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class FusedHit:
    """A document's fused score and its 1-based rank in each ranking that contains it."""

    doc_id: str
    score: float
    ranks: dict[str, int]


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], k: int = RRF_K, limit: int | None = None
) -> list[FusedHit]:
    """Fuse named rankings (best first) into one list, best first.

    Ties are broken by the best single rank, then by id, so the order is deterministic.
    """
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for side, ranking in rankings.items():
        seen: set[str] = set()
        for position, doc_id in enumerate(ranking, start=1):
            if doc_id in seen:
                continue  # a ranking lists each document once; ignore repeats
            seen.add(doc_id)
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + position)
            ranks.setdefault(doc_id, {})[side] = position
    fused = [FusedHit(doc_id, score, ranks[doc_id]) for doc_id, score in scores.items()]
    fused.sort(key=lambda hit: (-hit.score, min(hit.ranks.values()), hit.doc_id))
    return fused if limit is None else fused[:limit]


def query_terms(text: str) -> list[str]:
    """The distinct word tokens of a natural-language query, lower-cased, in order.

    Only letters and digits survive, so the terms can be joined into ``to_tsquery`` syntax
    without any operator or quote from the caller reaching the parser.
    """
    terms: list[str] = []
    for found in _TOKEN.findall(text.lower()):
        token = found[:MAX_TERM_CHARS]
        if token not in terms:
            terms.append(token)
        if len(terms) == MAX_TERMS:
            break
    return terms


def or_tsquery(terms: Sequence[str]) -> str:
    """``'a | b | c'``: a tsquery matching documents containing *any* of the terms."""
    return " | ".join(terms)
