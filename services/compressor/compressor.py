"""The compressor's pure entry point: text in, a ``MemoryCompressed`` payload (or none) out.

This is what the service wires onto the bus: on a new version it calls :meth:`Compressor.offline`
(pure, synchronous, deterministic) and, when LLM engines are configured, :meth:`Compressor.run`,
whose ``on_offline`` callback fires with the offline payload before any LLM answer is awaited.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from libs.events.compression import MemoryCompressedData, Trigger
from libs.events.errors import InvalidInput
from services.compressor.contest import (
    QUALITY_FLOOR,
    ContestResult,
    Judge,
    decide,
    run_contest,
    run_offline,
)
from services.compressor.engines.base import (
    DEFAULT_TARGET_RATIO,
    AsyncEngine,
    CompressionRequest,
    Engine,
)
from services.compressor.engines.extractive import ExtractiveEngine
from services.compressor.engines.facts import FactsEngine
from services.compressor.quality import Embed
from services.compressor.receipt import Setting, build_receipt, hash_text, receipt_id
from services.compressor.spans import find_spans
from services.compressor.text import validate_text
from services.compressor.tokenizer import TokenCounter, default_tokenizer

__all__ = ["MAX_INPUT_CHARS", "Compression", "CompressionSettings", "Compressor", "Subject"]

MAX_INPUT_CHARS: Final = 1_000_000
"""Longest text the compressor accepts (a memory is far smaller; this bounds the work)."""


class CompressionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The settings that shape a compression; all of them go into the receipt id."""

    target_ratio: float = DEFAULT_TARGET_RATIO
    """Compressed/original tokens the engines aim at, in (0, 1]."""
    quality_floor: float = QUALITY_FLOOR
    """Candidates scoring under this lose the contest (0-100)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_ratio) and 0.0 < self.target_ratio <= 1.0):
            raise InvalidInput("target_ratio must be in (0, 1]", target_ratio=self.target_ratio)
        if not (math.isfinite(self.quality_floor) and 0.0 <= self.quality_floor <= 100.0):
            raise InvalidInput("quality_floor must be in [0, 100]")


class Subject(msgspec.Struct, frozen=True, kw_only=True):
    """What is compressed: which memory version, and why."""

    memory_id: str
    version_id: str
    trigger: Trigger = "on_write"


class Compression(msgspec.Struct, frozen=True):
    """A contest and its payload (None when no candidate won)."""

    result: ContestResult
    data: MemoryCompressedData | None


class Compressor:
    """Engines, measurement and receipts behind two calls (offline and with LLM engines)."""

    def __init__(self, *, engines: Sequence[Engine] | None = None,
                 llm_engines: Sequence[AsyncEngine] = (),
                 tokens: TokenCounter | None = None, embed: Embed | None = None,
                 embed_name: str = "embedder",
                 settings: CompressionSettings | None = None) -> None:
        self.engines: tuple[Engine, ...] = tuple(
            engines if engines is not None else (ExtractiveEngine(), FactsEngine()))
        self.llm_engines = tuple(llm_engines)
        self.tokens = tokens or default_tokenizer()
        self.settings = settings or CompressionSettings()
        self._judge = Judge(tokens=self.tokens, embed=embed, embed_name=embed_name,
                            floor=self.settings.quality_floor)

    def request(self, text: str, query: str | None = None) -> CompressionRequest:
        """Validate ``text`` and compute once what every engine and measurement shares."""
        validate_text(text)
        if query is not None:
            validate_text(query, "query")
        if len(text) > MAX_INPUT_CHARS:
            raise InvalidInput(f"text longer than {MAX_INPUT_CHARS} characters",
                               length=len(text))
        return CompressionRequest(text=text, spans=find_spans(text),
                                  input_tokens=self.tokens.count(text),
                                  target_ratio=self.settings.target_ratio, query=query)

    def _settings(self, query: str | None) -> dict[str, Setting]:
        out: dict[str, Setting] = {"target_ratio": self.settings.target_ratio,
                                   "quality_floor": self.settings.quality_floor}
        if query is not None:
            out["query"] = query
        return out

    def _payload(self, subject: Subject, request: CompressionRequest,
                 result: ContestResult) -> Compression:
        data = build_receipt(
            memory_id=subject.memory_id, version_id=subject.version_id,
            trigger=subject.trigger, text=request.text, input_tokens=request.input_tokens,
            result=result, settings=self._settings(request.query), tokenizer=self.tokens.name,
        )
        return Compression(result, data)

    def offline(self, subject: Subject, text: str, query: str | None = None) -> Compression:
        """Run the offline engines only (pure, deterministic) and build the payload."""
        request = self.request(text, query)
        return self._payload(subject, request, run_offline(request, self.engines, self._judge))

    async def run(self, subject: Subject, text: str, query: str | None = None, *,
                  on_offline: Callable[[Compression], None] | None = None) -> Compression:
        """Offline and LLM engines; ``on_offline`` gets the offline payload first."""
        request = self.request(text, query)

        def offline_ready(result: ContestResult) -> None:
            if on_offline is not None:
                on_offline(self._payload(subject, request, result))

        result = await run_contest(request, self.engines, self.llm_engines, self._judge,
                                   on_offline=offline_ready)
        return self._payload(subject, request, result)

    def planned_receipt_id(self, subject: Subject, text: str, *, with_llm: bool,
                           query: str | None = None) -> str:
        """The receipt id a compression of ``text`` will have, known before any engine runs
        (so a compression already recorded is never run again): offline engines only, or
        with the LLM engines too."""
        engines = [(e.name, e.version) for e in self.engines]
        if with_llm:
            engines += [(e.name, e.version) for e in self.llm_engines]
        return receipt_id(memory_id=subject.memory_id, version_id=subject.version_id,
                          input_hash=hash_text(text), engines=engines,
                          settings=self._settings(query), trigger=subject.trigger,
                          tokenizer=self.tokens.name)

    async def llm_round(self, subject: Subject, text: str, offline: Compression,
                        query: str | None = None) -> Compression:
        """The LLM engines against the offline contest already run (``offline``): the result
        :meth:`run` would give, without running the offline engines again."""
        request = self.request(text, query)
        remote = await run_contest(request, (), self.llm_engines, self._judge)
        result = decide([*offline.result.contestants, *remote.contestants])
        return self._payload(subject, request, result)
