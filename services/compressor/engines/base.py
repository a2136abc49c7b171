"""The engine interface: a request in, a candidate out. An engine never grades itself.

A :class:`Candidate` says what the engine produced and what it *claims* about it (which input
ranges each piece of output came from, what it removed and why, what it kept on purpose). The
compressor measures the candidate against the input independently (``quality.py``); claims that
do not hold (an output range that is not what it says it is) count against the candidate.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

import msgspec

from libs.events.errors import MnemosError
from services.compressor.spans import Span
from services.compressor.tokenizer import TokenCounter

__all__ = [
    "DEFAULT_TARGET_RATIO",
    "AsyncEngine",
    "Candidate",
    "CandidateKind",
    "CompressionRequest",
    "Engine",
    "EngineError",
    "EngineTimeout",
    "NoOutput",
    "Note",
    "Source",
]

DEFAULT_TARGET_RATIO: Final = 0.45
"""Compressed/original tokens an engine aims at unless told otherwise."""

CandidateKind = Literal["extractive", "rewrite", "passthrough"]
"""``extractive``: output is input units verbatim; ``rewrite``: new text; ``passthrough``:
the input unchanged (too short to gain)."""


class CompressionRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What every engine gets: the text, its protected spans (computed once), its token count."""

    text: str
    spans: tuple[Span, ...]
    input_tokens: int
    target_ratio: float = DEFAULT_TARGET_RATIO
    query: str | None = None


class Note(msgspec.Struct, frozen=True):
    """An input range removed or kept on purpose, with the reason."""

    start: int
    end: int
    reason: str


class Source(msgspec.Struct, frozen=True):
    """The engine's claim: output ``[out_start, out_end)`` comes from these input ranges."""

    out_start: int
    out_end: int
    sources: tuple[tuple[int, int], ...]


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One engine's output for one request, with its claims (never a quality figure)."""

    engine: str
    engine_version: str
    kind: CandidateKind
    text: str
    sources: tuple[Source, ...] = ()
    removed: tuple[Note, ...] = ()
    preserved: tuple[Note, ...] = ()
    notes: tuple[str, ...] = ()


class EngineError(MnemosError):
    """An engine failed on this input (the contest records it as the loser's reason)."""

    code = "engine_error"
    http_status = 500


class NoOutput(EngineError):
    """The engine had nothing to offer for this input (e.g. the text has no facts to rewrite)."""

    code = "engine_no_output"


class EngineTimeout(EngineError):
    """The engine did not answer within its own timeout."""

    code = "engine_timeout"
    http_status = 504


class Engine(Protocol):
    """An offline engine: pure and synchronous, same request gives the same candidate."""

    @property
    def name(self) -> str:
        """Stable engine name (``extractive``, ``facts``)."""
        ...

    @property
    def version(self) -> str:
        """Version of the engine's algorithm and settings; part of the receipt id."""
        ...

    def compress(self, request: CompressionRequest, tokens: TokenCounter) -> Candidate:
        """A candidate for ``request``; raises :class:`EngineError` (or NoOutput)."""
        ...


class AsyncEngine(Protocol):
    """An engine that waits on something outside the process (an LLM); has its own timeout."""

    @property
    def name(self) -> str:
        """Stable engine name (``llm``)."""
        ...

    @property
    def version(self) -> str:
        """Version of the prompt and the configured model; part of the receipt id."""
        ...

    @property
    def timeout_s(self) -> float:
        """How long the engine waits at most; the contest never waits longer."""
        ...

    async def compress(self, request: CompressionRequest) -> Candidate:
        """A candidate for ``request``; raises EngineError, NoOutput or EngineTimeout."""
        ...
