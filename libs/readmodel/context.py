"""Re-ranking with conversation context and time. Pure functions.

**The answer is in the next turn.** In a conversation the turn that best matches a question is
often the partner's question restating it; the answer is the turn after. So each of the best
fused candidates (the *pool*) lends a share of its score to its neighbours in its thread: the
turn after it gets ``after_share`` of it, the turn before ``before_share``. A neighbour no side
retrieved becomes a candidate this way.

**Recency.** With a preference for recent memories, a score is multiplied by
``(1 - weight) + weight * 2 ** (-age / half_life)`` on the chosen clock: a memory of age 0 keeps
its score, an old one keeps ``1 - weight`` of it, so recency re-orders near-ties but never
buries a clearly better match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Neighbours", "recency_factor", "spread_to_neighbours"]

_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The turns just before and just after a memory in its thread (``None``: none)."""

    before: str | None
    after: str | None


def spread_to_neighbours(scores: Mapping[str, float], pool: Sequence[str],
                         neighbours: Mapping[str, Neighbours], *, after_share: float,
                         before_share: float) -> dict[str, float]:
    """``scores`` plus, for every pool member, its share to the turn after and before it.

    Shares are taken from the scores *before* spreading, so the result does not depend on the
    order of the pool.
    """
    spread = dict(scores)
    for doc_id in pool:
        around = neighbours.get(doc_id)
        base = scores.get(doc_id, 0.0)
        if around is None or base <= 0.0:
            continue
        if around.after is not None and after_share > 0.0:
            spread[around.after] = spread.get(around.after, 0.0) + after_share * base
        if around.before is not None and before_share > 0.0:
            spread[around.before] = spread.get(around.before, 0.0) + before_share * base
    return spread


def recency_factor(at: datetime, now: datetime, *, weight: float, half_life_days: float
                   ) -> float:
    """The multiplier of a memory dated ``at`` seen from ``now`` (a future date counts as 0)."""
    age_days = max((now - at).total_seconds(), 0.0) / _DAY_S
    return (1.0 - weight) + weight * math.exp(-math.log(2.0) * age_days / half_life_days)
