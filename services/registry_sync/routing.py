"""Routing (pure): hard filters, then a documented score, over an index rebuilt each sync tick.

**Hard filters**, in order (each rejection is counted by reason): liveness (retired never;
suspect only if the request allows it), the namespace's allow-list (glob patterns of model
keys; a namespace without a list allows all), required capabilities, input modalities, context
window >= context tokens needed, max output >= output tokens needed, explicit exclusions. An
unknown context window counts as :data:`ASSUMED_CONTEXT`, an unknown max output as
:data:`ASSUMED_MAX_OUTPUT`: a model is not excluded for a limit nobody stated, unless the
request needs more than what nearly every model offers.

**Score** = ``wq*quality + wc*cost + wl*latency + wr*reliability``, weights by profile
(:data:`PROFILES`), each component in 0..1:

- quality: the leaderboard routing weight (see ``ranking``), :data:`UNRANKED_QUALITY` if none;
- cost: ``1 / (1 + blended / median_blended)`` with blended = 3/4 input + 1/4 output price per
  token (a typical prompt-heavy mix); an unpriced model counts as the median;
- latency: ``1 / (1 + observed_s / LATENCY_REF_S)``, observed = EWMA of answered calls
  (:data:`LATENCY_REF_S` until a call is observed);
- reliability: EWMA of call success (1) / failure (0), starting at :data:`RELIABILITY_PRIOR`.

Ties are broken by model key (the index is sorted by key and the sort is stable), so the same
index and request always give the same order. The order is the failover order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from libs.events.registry import ModelRecordData
from services.registry_sync.state import RegistryState

__all__ = [
    "PROFILES",
    "Candidate",
    "Observations",
    "Profile",
    "RouteDecision",
    "RouteRequest",
    "RoutingIndex",
    "RoutingPolicy",
    "pick_diverse",
]

Profile = Literal["cheap", "balanced", "best"]
PROFILES: Final[dict[str, tuple[float, float, float, float]]] = {
    "cheap": (0.20, 0.60, 0.10, 0.10),
    "balanced": (0.45, 0.25, 0.15, 0.15),
    "best": (0.75, 0.05, 0.10, 0.10),
}
"""(quality, cost, latency, reliability) weights per profile; each row sums to 1."""
UNRANKED_QUALITY: Final = 0.4
"""Quality of a model no leaderboard row matched (below the neutral 0.5: unproven)."""
ASSUMED_CONTEXT: Final = 8192
"""Context window assumed when no source states one."""
ASSUMED_MAX_OUTPUT: Final = 4096
"""Max output assumed when no source states one."""
LATENCY_REF_S: Final = 5.0
"""Latency at which the latency component is 0.5."""
RELIABILITY_PRIOR: Final = 0.9
"""Reliability of a model before any observed call."""
EWMA_ALPHA: Final = 0.2
"""Weight of the newest observation in the latency and reliability averages."""
DEFAULT_LIMIT: Final = 16
"""Candidates returned per decision (enough for a consultation and its failovers)."""
_LIVENESS: Final = {"active": 0, "suspect": 1, "retired": 2}


class RouteRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a caller needs from a model."""

    namespace: str = "default"
    capabilities: tuple[str, ...] = ("chat",)
    input_modalities: tuple[str, ...] = ("text",)
    context_tokens: int = 0
    output_tokens: int = 0
    profile: Profile = "balanced"
    include_suspect: bool = False
    exclude: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT


class RoutingPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Per-namespace allow-lists: glob patterns over model keys (``anthropic/*``)."""

    allow: dict[str, tuple[str, ...]] = {}


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A model that passed the filters, with its score and the score's components."""

    key: str
    family: str
    score: float
    quality: float
    cost: float
    latency: float
    reliability: float


class RouteDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Candidates best first (the failover order) and rejections counted by reason."""

    candidates: tuple[Candidate, ...]
    considered: int
    rejected: dict[str, int]


@dataclass
class Observations:
    """Observed latency and reliability per model key (EWMA), carried across index rebuilds."""

    latency_s: dict[str, float] = field(default_factory=dict)
    reliability: dict[str, float] = field(default_factory=dict)

    def record(self, key: str, ok: bool, latency_s: float | None = None) -> None:
        """Fold one call's outcome into the averages."""
        before = self.reliability.get(key, RELIABILITY_PRIOR)
        self.reliability[key] = (1 - EWMA_ALPHA) * before + EWMA_ALPHA * (1.0 if ok else 0.0)
        if ok and latency_s is not None:
            previous = self.latency_s.get(key)
            self.latency_s[key] = latency_s if previous is None else (
                (1 - EWMA_ALPHA) * previous + EWMA_ALPHA * latency_s)


Floats = npt.NDArray[np.float64]


class RoutingIndex:
    """Column arrays of every registry model, sorted by key; built once per sync tick."""

    def __init__(self, state: RegistryState, policy: RoutingPolicy | None = None,
                 observations: Observations | None = None) -> None:
        self.policy = policy or RoutingPolicy()
        self.observations = observations or Observations()
        models = [state.models[k] for k in sorted(state.models)]
        self.keys = [m.record.key for m in models]
        self.families = [m.record.family for m in models]
        self._position = {k: i for i, k in enumerate(self.keys)}
        self._vocabulary: dict[str, int] = {}
        records = [m.record for m in models]
        self._caps = np.array([self._bits(r.capabilities) for r in records], dtype=np.int64)
        self._mods = np.array([self._bits(r.input_modalities, "modality:") for r in records],
                              dtype=np.int64)
        self._liveness = np.array([_LIVENESS[m.liveness] for m in models], dtype=np.int8)
        self._context = np.array([r.context_window or ASSUMED_CONTEXT for r in records],
                                 dtype=np.int64)
        self._max_out = np.array([r.max_output_tokens or ASSUMED_MAX_OUTPUT for r in records],
                                 dtype=np.int64)
        self._quality = np.array([m.ranking.routing_weight if m.ranking else UNRANKED_QUALITY
                                  for m in models], dtype=np.float64)
        self._cost = _cost_scores(records)
        self._latency = np.full(len(models), LATENCY_REF_S, dtype=np.float64)
        self._reliability = np.full(len(models), RELIABILITY_PRIOR, dtype=np.float64)
        for key, value in self.observations.latency_s.items():
            self._set(self._latency, key, value)
        for key, value in self.observations.reliability.items():
            self._set(self._reliability, key, value)
        self._allow_masks: dict[str, npt.NDArray[np.bool_]] = {}

    def _set(self, column: Floats, key: str, value: float) -> None:
        position = self._position.get(key)
        if position is not None:
            column[position] = value

    def _bits(self, names: Iterable[str], prefix: str = "") -> int:
        bits = 0
        for name in names:
            bit = self._vocabulary.setdefault(prefix + name, len(self._vocabulary))
            if bit < 63:
                bits |= 1 << bit
        return bits

    def _need(self, names: Iterable[str], prefix: str = "") -> int | None:
        """Bitmask of required names; None if one is unknown to every model (nothing fits)."""
        bits = 0
        for name in names:
            bit = self._vocabulary.get(prefix + name)
            if bit is None or bit >= 63:
                return None
            bits |= 1 << bit
        return bits

    def observe(self, key: str, ok: bool, latency_s: float | None = None) -> None:
        """Record a call's outcome; the next decision already uses it."""
        self.observations.record(key, ok, latency_s)
        self._set(self._reliability, key, self.observations.reliability[key])
        if key in self.observations.latency_s:
            self._set(self._latency, key, self.observations.latency_s[key])

    def _allowed(self, namespace: str) -> npt.NDArray[np.bool_] | None:
        patterns = self.policy.allow.get(namespace)
        if patterns is None:
            return None
        mask = self._allow_masks.get(namespace)
        if mask is None:
            mask = np.array([any(fnmatch.fnmatchcase(k, p) for p in patterns)
                             for k in self.keys], dtype=np.bool_)
            self._allow_masks[namespace] = mask
        return mask

    def route(self, request: RouteRequest) -> RouteDecision:
        """Filter, score and order the models for ``request``."""
        rejected: dict[str, int] = {}
        mask = np.ones(len(self.keys), dtype=np.bool_)

        def cut(reason: str, keep: npt.NDArray[np.bool_]) -> None:
            nonlocal mask
            dropped = int(np.count_nonzero(mask & ~keep))
            if dropped:
                rejected[reason] = dropped
            mask &= keep

        cut("retired", self._liveness != _LIVENESS["retired"])
        if not request.include_suspect:
            cut("suspect", self._liveness != _LIVENESS["suspect"])
        allowed = self._allowed(request.namespace)
        if allowed is not None:
            cut("not_allowed", allowed)
        caps = self._need(request.capabilities)
        cut("capability", np.zeros_like(mask) if caps is None else (self._caps & caps) == caps)
        mods = self._need(request.input_modalities, "modality:")
        cut("modality", np.zeros_like(mask) if mods is None else (self._mods & mods) == mods)
        cut("context", self._context >= request.context_tokens)
        cut("max_output", self._max_out >= request.output_tokens)
        if request.exclude:
            excluded = np.ones_like(mask)
            for key in request.exclude:
                if key in self._position:
                    excluded[self._position[key]] = False
            cut("excluded", excluded)
        return self._order(request, np.flatnonzero(mask), rejected)

    def _order(self, request: RouteRequest, rows: npt.NDArray[np.intp],
               rejected: dict[str, int]) -> RouteDecision:
        wq, wc, wl, wr = PROFILES[request.profile]
        quality, cost = self._quality[rows], self._cost[rows]
        latency = 1.0 / (1.0 + self._latency[rows] / LATENCY_REF_S)
        reliability = self._reliability[rows]
        score = wq * quality + wc * cost + wl * latency + wr * reliability
        order = np.argsort(-score, kind="stable")[: max(0, request.limit)]
        candidates = tuple(
            Candidate(key=self.keys[rows[i]], family=self.families[rows[i]],
                      score=round(float(score[i]), 9), quality=float(quality[i]),
                      cost=float(cost[i]), latency=float(latency[i]),
                      reliability=float(reliability[i]))
            for i in order)
        return RouteDecision(candidates=candidates, considered=len(self.keys),
                             rejected=rejected)


def _cost_scores(records: list[ModelRecordData]) -> Floats:
    blended = np.array([
        0.75 * r.input_cost_per_token + 0.25 * r.output_cost_per_token
        if r.input_cost_per_token is not None and r.output_cost_per_token is not None
        else np.nan
        for r in records], dtype=np.float64)
    known = blended[~np.isnan(blended)]
    positive = known[known > 0]
    median = float(np.median(positive)) if positive.size else 1e-6
    blended = np.where(np.isnan(blended), median, blended)
    scores: Floats = 1.0 / (1.0 + blended / median)
    return scores


def pick_diverse(candidates: Iterable[Candidate], n: int,
                 families_taken: Mapping[str, int] | None = None) -> list[Candidate]:
    """The first ``n`` candidates of pairwise different families (best first)."""
    taken = set(families_taken or {})
    out: list[Candidate] = []
    for candidate in candidates:
        if len(out) >= n:
            break
        if candidate.family not in taken:
            taken.add(candidate.family)
            out.append(candidate)
    return out
