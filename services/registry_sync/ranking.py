"""Joining a leaderboard to the registry, and the routing weight (pure).

**Matching.** A leaderboard name maps to registry models in two ways only:

1. the explicit alias table: ``{"leaderboard name": ["provider/model-id" | "model-id", ...]}``
   (a bare model id names that id at every provider);
2. exact normalised equality with a model id or display name, where normalising is NFKC,
   case folding, trimming and turning runs of whitespace and ``_`` into one ``-``.

Nothing else: no prefix, date-suffix or edit-distance matching. A name that matches nothing is
counted and reported in ``RankingPublished.unmatched_names``, never guessed.

**Routing weight** (0..1), from rating ``r``, CI lower bound ``lo`` and votes ``n``::

    lo     = rating_lower, or r - UNKNOWN_CI_HALF_WIDTH when the row gives no CI
    q      = clip((lo - LO_min) / (R_max - LO_min), 0, 1)   over all rows of the board
    c      = n / (n + VOTE_HALF_CONFIDENCE)                  (0 when votes are unknown)
    weight = c * q + (1 - c) * NEUTRAL_PRIOR

Ranking by the lower bound, not the point estimate, prefers a model we are sure is good over
one that may be; ``c`` shrinks thinly voted models toward a neutral prior. Rounded to 6 digits
so that the same board gives byte-identical events on every machine.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Final

from libs.events.registry import ModelRecordData, RankingEntryData, RankingPublishedData
from services.registry_sync.leaderboard import BoardRow

__all__ = [
    "MAX_UNMATCHED_NAMES",
    "NEUTRAL_PRIOR",
    "UNKNOWN_CI_HALF_WIDTH",
    "VOTE_HALF_CONFIDENCE",
    "normalise_name",
    "publish_ranking",
    "routing_weights",
]

UNKNOWN_CI_HALF_WIDTH: Final = 25.0
"""Rating points assumed as CI half-width when a row has none (wider than most Arena CIs)."""
VOTE_HALF_CONFIDENCE: Final = 1000.0
"""Votes at which a row's quality counts half and the neutral prior half."""
NEUTRAL_PRIOR: Final = 0.5
"""Weight of a model the board knows nothing reliable about."""
MAX_UNMATCHED_NAMES: Final = 200
"""Unmatched names listed in one event (the count is always complete)."""
_SEPARATORS: Final = re.compile(r"[\s_]+")


def normalise_name(name: str) -> str:
    """The form in which leaderboard names and model ids are compared."""
    return _SEPARATORS.sub("-", unicodedata.normalize("NFKC", name).casefold().strip())


def _lower_bound(row: BoardRow) -> float:
    return row.ci_lower if row.ci_lower is not None else row.rating - UNKNOWN_CI_HALF_WIDTH


def routing_weights(rows: Sequence[BoardRow]) -> dict[str, float]:
    """Weight of every row's name by the formula in the module docstring."""
    if not rows:
        return {}
    lows = [_lower_bound(r) for r in rows]
    floor, top = min(lows), max(r.rating for r in rows)
    span = top - floor
    weights: dict[str, float] = {}
    for row, low in zip(rows, lows, strict=True):
        quality = min(1.0, max(0.0, (low - floor) / span)) if span > 0 else NEUTRAL_PRIOR
        votes = float(row.votes or 0)
        confidence = votes / (votes + VOTE_HALF_CONFIDENCE)
        weights[row.name] = round(confidence * quality + (1 - confidence) * NEUTRAL_PRIOR, 6)
    return weights


def _name_index(records: Mapping[str, ModelRecordData]) -> dict[str, list[str]]:
    index: dict[str, set[str]] = {}
    for key, record in records.items():
        for name in (record.model_id, record.display_name):
            if name:
                index.setdefault(normalise_name(name), set()).add(key)
    return {name: sorted(keys) for name, keys in index.items()}


def _alias_keys(targets: Sequence[str], records: Mapping[str, ModelRecordData],
                by_id: Mapping[str, list[str]]) -> list[str]:
    keys: set[str] = set()
    for target in targets:
        if target in records:
            keys.add(target)
        keys.update(by_id.get(target, ()))
    return sorted(keys)


def publish_ranking(
    records: Mapping[str, ModelRecordData], rows: Sequence[BoardRow], *, source: str,
    category: str, aliases: Mapping[str, Sequence[str]], pages: int = 1, malformed: int = 0,
) -> RankingPublishedData:
    """Match ``rows`` (one category, see ``leaderboard.select``) to ``records``."""
    weights = routing_weights(rows)
    by_name = _name_index(records)
    by_id: dict[str, list[str]] = {}
    for key, record in records.items():
        by_id.setdefault(record.model_id, []).append(key)
    entries: dict[str, RankingEntryData] = {}
    unmatched: list[str] = []
    for row in rows:
        alias = aliases.get(row.name)
        keys = _alias_keys(alias, records, by_id) if alias else by_name.get(
            normalise_name(row.name), [])
        if not keys:
            unmatched.append(row.name)
        for key in keys:
            if key not in entries:  # the first (best listed) row a model matches wins
                entries[key] = RankingEntryData(
                    key=key, leaderboard_name=row.name,
                    matched_by="alias" if alias else "exact", score=row.rating,
                    ci_lower=row.ci_lower, ci_upper=row.ci_upper, votes=row.votes,
                    rank=row.rank, routing_weight=weights[row.name])
    dates = [r.publish_date for r in rows if r.publish_date]
    return RankingPublishedData(
        source=source, category=category, publish_date=max(dates) if dates else None,
        rows=len(rows), pages=pages, entries=tuple(entries[k] for k in sorted(entries)),
        unmatched=len(unmatched), unmatched_names=tuple(sorted(unmatched)[:MAX_UNMATCHED_NAMES]),
        malformed_rows=malformed,
    )
