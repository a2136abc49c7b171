"""Planning a BM25 search over Postgres full text: which postings to read, how to weigh terms.

Pure functions, no I/O. Scoring every document that contains *any* query term costs time in
proportion to the commonest term's document frequency; instead the candidates are read in
tiers, rarest terms first, and only candidates are scored (with every query term):

1. ``rare``: every posting of the rarest terms whose document frequencies sum to at most
   ``budget`` (a document with a rare term is where BM25 puts most of its weight);
2. ``all_common``: documents containing *all* the remaining (common) terms, at most ``cap`` of
   them (several common words together are the next-best evidence);
3. ``any_common``: documents containing *any* common term, at most ``fill`` of them, so a
   ranking still fills up when the first two tiers find too little (OR semantics).

The approximation: a document whose only matches are common terms can be missing from the
candidates (tiers 2 and 3 are capped, in physical order), so it can be left out of the ranking
although its score would have placed it. Such a document scores below any document with a rare
term unless it matches many common ones, and documents with all the common terms are near-ties.
Every candidate's score is exact BM25. On the benchmark's 100k corpus the top 50 equal those of
exact BM25 over all matching documents for 100 of 100 sampled queries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CANDIDATE_BUDGET", "COMMON_CAP", "CandidatePlan", "bm25_idf", "plan_candidates", "tsquery_all",
    "tsquery_any",
]

CANDIDATE_BUDGET: Final = 1000
"""Postings read in full (tier 1): the rarest terms' document frequencies sum to at most this."""
COMMON_CAP: Final = 500
"""At most this many documents with all the common terms (tier 2). They share the same terms,
so their BM25 scores differ only by length and term frequency: near-ties, cheap to sample."""


@dataclass(frozen=True, slots=True)
class CandidatePlan:
    """Lexemes of each candidate tier (empty: the tier is skipped) and the caps of tiers 2, 3."""

    rare: tuple[str, ...]
    common: tuple[str, ...]
    cap: int
    fill: int

    @property
    def empty(self) -> bool:
        """Whether no query lexeme occurs in any document: nothing to search."""
        return not self.rare and not self.common


def plan_candidates(df: Mapping[str, int], limit: int, budget: int = CANDIDATE_BUDGET,
                    cap: int = COMMON_CAP) -> CandidatePlan:
    """Split the query lexemes that occur (``df > 0``) into rare and common, rarest first.

    A lexeme is rare while the summed document frequency, it included, stays within ``budget``;
    from the first lexeme that does not fit, the rest are common. Ties in ``df`` are ordered by
    lexeme so the plan is deterministic.
    """
    ordered = sorted((n, lexeme) for lexeme, n in df.items() if n > 0)
    rare: list[str] = []
    spent = 0
    for n, lexeme in ordered:
        if spent + n > budget:
            break
        spent += n
        rare.append(lexeme)
    common = tuple(lexeme for _, lexeme in ordered[len(rare):])
    return CandidatePlan(rare=tuple(rare), common=common, cap=cap, fill=max(limit, 1))


def bm25_idf(doc_count: int, df: int) -> float:
    """BM25's inverse document frequency, the non-negative variant ``ln(1 + (N-n+.5)/(n+.5))``."""
    return math.log(1.0 + (doc_count - df + 0.5) / (df + 0.5))


def tsquery_any(lexemes: tuple[str, ...]) -> str:
    """A tsquery text matching any of ``lexemes`` (already normalised, quoted verbatim)."""
    return " | ".join(_quote(lexeme) for lexeme in lexemes)


def tsquery_all(lexemes: tuple[str, ...]) -> str:
    """A tsquery text matching documents containing all of ``lexemes``."""
    return " & ".join(_quote(lexeme) for lexeme in lexemes)


def _quote(lexeme: str) -> str:
    # tsquery quoting: a lexeme inside single quotes, with quotes and backslashes escaped, is
    # taken verbatim (no parsing, no further normalisation) - exactly the lexemes of `tsv`.
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"
