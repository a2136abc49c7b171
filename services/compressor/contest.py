"""The contest: every engine compresses, the compressor measures each candidate, one wins.

Order of judgement, the same every time:

1. an engine that raised loses with ``error``, ``no_output`` or ``timeout``;
2. a candidate that loses a protected span or invents a number, name or identifier loses with
   ``gate_failed`` (the gate is never traded against score);
3. a candidate whose quality score is under the floor loses with ``below_floor``;
4. the rest are ranked by *merit* = ``score * (1 - ratio)`` (quality times token saving; a pass
   through has merit 0), then by fewer compressed tokens, then by engine name. The first wins;
   the others lose with ``worse_score``.

The offline engines are pure and run first; :func:`run_contest` hands their result to
``on_offline`` before it waits on any LLM engine, so a dead or slow provider never delays the
offline receipt, and an LLM engine never gets more than its own ``timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final, Literal

import msgspec

from libs.events.compression import DECIMALS, ContestEntry
from libs.events.errors import MnemosError
from libs.runtime.logging import get_logger
from services.compressor.engines.base import (
    AsyncEngine,
    Candidate,
    CompressionRequest,
    Engine,
    EngineTimeout,
    NoOutput,
)
from services.compressor.quality import Embed, Measurement, measure
from services.compressor.tokenizer import TokenCounter

__all__ = [
    "QUALITY_FLOOR",
    "ContestResult",
    "Contestant",
    "Judge",
    "decide",
    "run_contest",
    "run_offline",
]

QUALITY_FLOOR: Final = 60.0
"""Candidates scoring below this (0-100) lose even when they pass the gates."""

_TIMEOUT_GRACE_S: Final = 0.05
"""Slack over an engine's own timeout before the contest gives up on it."""

_log = get_logger(__name__)

Outcome = Literal["won", "gate_failed", "below_floor", "no_output", "error", "timeout",
                  "worse_score", "eligible"]
"""A contestant's outcome; ``eligible`` only until :func:`decide` ranks it."""


class Contestant(msgspec.Struct, frozen=True, kw_only=True):
    """One engine's run: its candidate and measurement when it produced one."""

    engine: str
    engine_version: str
    outcome: Outcome
    reason: str
    candidate: Candidate | None = None
    measurement: Measurement | None = None
    compressed_tokens: int | None = None
    merit: float | None = None

    def entry(self) -> ContestEntry:
        """The wire form recorded in the receipt (only for decided contestants)."""
        outcome = self.outcome
        if outcome == "eligible":
            raise ValueError("an undecided contestant has no receipt entry")
        return ContestEntry(
            engine=self.engine, engine_version=self.engine_version, outcome=outcome,
            reason=self.reason,
            score=self.measurement.score if self.measurement else None,
            compressed_tokens=self.compressed_tokens,
        )


class ContestResult(msgspec.Struct, frozen=True):
    """All contestants in engine order; ``winner`` is one of them (None when all lost)."""

    contestants: tuple[Contestant, ...]
    winner: Contestant | None


class Judge(msgspec.Struct, frozen=True, kw_only=True):
    """What measuring needs: the tokenizer, the optional embedder, the floor."""

    tokens: TokenCounter
    embed: Embed | None = None
    embed_name: str = "embedder"
    floor: float = QUALITY_FLOOR


def _failed(name: str, version: str, exc: BaseException) -> Contestant:
    outcome: Outcome
    if isinstance(exc, EngineTimeout):
        outcome = "timeout"
    elif isinstance(exc, NoOutput):
        outcome = "no_output"
    else:
        outcome = "error"
    message = exc.message if isinstance(exc, MnemosError) else f"{type(exc).__name__}: {exc}"
    return Contestant(engine=name, engine_version=version, outcome=outcome, reason=message)


def _judged(request: CompressionRequest, candidate: Candidate, judge: Judge) -> Contestant:
    """Measure ``candidate`` and decide its provisional outcome (gate, floor or eligible)."""
    m = measure(request.text, request.spans, candidate, embed=judge.embed,
                embed_name=judge.embed_name)
    tokens = judge.tokens.count(candidate.text)
    ratio = tokens / request.input_tokens if request.input_tokens else 1.0
    merit = round(m.score * max(0.0, 1.0 - ratio), DECIMALS)
    base = Contestant(engine=candidate.engine, engine_version=candidate.engine_version,
                      outcome="eligible", reason="", candidate=candidate, measurement=m,
                      compressed_tokens=tokens)
    if m.lost or m.unsupported:
        parts = []
        if m.lost:
            parts.append("lost " + ", ".join(f"{s.kind} {s.text[:40]!r}" for s in m.lost[:5]))
        if m.unsupported:
            parts.append("not in the input: " + ", ".join(repr(u) for u in m.unsupported[:5]))
        return msgspec.structs.replace(base, outcome="gate_failed", reason="; ".join(parts))
    if m.score < judge.floor:
        return msgspec.structs.replace(
            base, outcome="below_floor", reason=f"score {m.score:.2f} < floor {judge.floor:g}")
    return msgspec.structs.replace(base, merit=merit)


def decide(contestants: Sequence[Contestant]) -> ContestResult:
    """Pick the winner among eligible contestants (see the module docstring for the order)."""
    eligible = [i for i, c in enumerate(contestants)
                if c.outcome in {"eligible", "won", "worse_score"}]
    ranked = sorted(eligible, key=lambda i: (-(contestants[i].merit or 0.0),
                                             contestants[i].compressed_tokens or 0,
                                             contestants[i].engine))
    best = contestants[ranked[0]] if ranked else None
    decided: list[Contestant] = []
    for i, c in enumerate(contestants):
        if best is not None and i == ranked[0]:
            decided.append(msgspec.structs.replace(
                c, outcome="won", reason=f"best merit {c.merit} (score x token saving)"))
        elif best is not None and i in eligible:
            decided.append(msgspec.structs.replace(
                c, outcome="worse_score",
                reason=f"merit {c.merit} < {best.merit} of {best.engine}"))
        else:
            decided.append(c)
    final = next((c for c in decided if c.outcome == "won"), None)
    return ContestResult(tuple(decided), final)


def _run_one(engine: Engine, request: CompressionRequest, judge: Judge) -> Contestant:
    try:
        candidate = engine.compress(request, judge.tokens)
    except Exception as exc:  # an engine bug must not stop the others
        if not isinstance(exc, MnemosError):
            _log.warning("engine_crashed", engine=engine.name, error=repr(exc))
        return _failed(engine.name, engine.version, exc)
    return _judged(request, candidate, judge)


def run_offline(request: CompressionRequest, engines: Sequence[Engine],
                judge: Judge) -> ContestResult:
    """Run the offline engines in order, measure each candidate, decide (deterministic)."""
    return decide([_run_one(engine, request, judge) for engine in engines])


async def _run_async(engine: AsyncEngine, request: CompressionRequest,
                     judge: Judge) -> Contestant:
    try:
        async with asyncio.timeout(engine.timeout_s + _TIMEOUT_GRACE_S):
            candidate = await engine.compress(request)
    except TimeoutError:
        return _failed(engine.name, engine.version,
                       EngineTimeout(f"no answer within {engine.timeout_s:g} s"))
    except Exception as exc:
        return _failed(engine.name, engine.version, exc)
    return _judged(request, candidate, judge)


async def run_contest(
    request: CompressionRequest, engines: Sequence[Engine], llm_engines: Sequence[AsyncEngine],
    judge: Judge, *, on_offline: Callable[[ContestResult], None] | None = None,
) -> ContestResult:
    """Offline engines first (their result goes to ``on_offline`` at once), then the LLM ones.

    LLM requests are already in flight while the offline engines run; each is bounded by its
    own timeout. The final result decides over every contestant.
    """
    tasks = [asyncio.create_task(_run_async(engine, request, judge)) for engine in llm_engines]
    await asyncio.sleep(0)  # let the LLM requests start before the CPU-bound offline work
    offline = run_offline(request, engines, judge)
    if on_offline is not None:
        on_offline(offline)
    if not tasks:
        return offline
    remote = await asyncio.gather(*tasks)
    return decide([*offline.contestants, *remote])
