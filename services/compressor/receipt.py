"""Receipts: the written, measured record of one compression, content-addressed.

The receipt id is blake3 over the canonical encoding (sorted-key compact JSON, the one codec of
``libs.events``) of everything that determines the compression and nothing that merely results
from it: the compressor version, the memory and version ids, the blake3 of the input, the
contest's engines with their versions (sorted), the settings, the trigger and the tokenizer.
The same (version, engines, settings) therefore always gives the same receipt id, so a retried or
replayed compression is recognised as the same one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import blake3

from libs.events.codec import canonical_bytes
from libs.events.compression import (
    DECIMALS,
    RECEIPT_ID_HEX_CHARS,
    CompressionReceipt,
    MemoryCompressedData,
    OutputSource,
    ProtectedSpan,
    SpanNote,
    Trigger,
)
from libs.events.errors import InvalidInput
from services.compressor.contest import Contestant, ContestResult
from services.compressor.purposes import judge
from services.compressor.quality import SCORE_FORMULA

__all__ = [
    "COMPRESSOR_VERSION",
    "Setting",
    "build_receipt",
    "hash_text",
    "receipt_id",
]

COMPRESSOR_VERSION: Final = "1"
"""Version of the measurement and receipt rules; part of every receipt id."""

_DOMAIN: Final = b"mnemos.compression-receipt.v1\x00"

Setting = str | int | float | bool
"""A setting value: a JSON scalar (finite numbers only)."""


def hash_text(text: str) -> str:
    """Hex blake3 of UTF-8 text (the input and output hashes of receipts)."""
    return blake3.blake3(text.encode("utf-8")).hexdigest()


def _check_settings(settings: Mapping[str, Setting]) -> dict[str, Setting]:
    for key, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput("settings must be finite", setting=key)
    return dict(settings)


def receipt_id(*, memory_id: str, version_id: str, input_hash: str,
               engines: Iterable[tuple[str, str]], settings: Mapping[str, Setting],
               trigger: Trigger, tokenizer: str) -> str:
    """The content-addressed id of a compression (see the module docstring)."""
    body = canonical_bytes({
        "compressor": COMPRESSOR_VERSION,
        "memory_id": memory_id,
        "version_id": version_id,
        "input_hash": input_hash,
        "engines": sorted(f"{name}:{version}" for name, version in engines),
        "settings": _check_settings(settings),
        "trigger": trigger,
        "tokenizer": tokenizer,
    })
    return blake3.blake3(_DOMAIN + body).hexdigest()[:RECEIPT_ID_HEX_CHARS]


def _parts(winner: Contestant) -> tuple[tuple[SpanNote, ...], tuple[SpanNote, ...],
                                        tuple[OutputSource, ...]]:
    """Removed, preserved and output sources; a rewrite that names no removal gets the
    measured one (input units whose content is not in the output)."""
    assert winner.candidate is not None and winner.measurement is not None
    candidate = winner.candidate
    removed = tuple(SpanNote(start=n.start, end=n.end, reason=n.reason) for n in candidate.removed)
    if not removed:
        removed = tuple(SpanNote(start=start, end=end, reason=why)
                        for start, end, why in winner.measurement.absent)
    preserved = tuple(SpanNote(start=n.start, end=n.end, reason=n.reason)
                      for n in candidate.preserved)
    sources = tuple(OutputSource(out_start=s.out_start, out_end=s.out_end, sources=s.sources)
                    for s in candidate.sources)
    return removed, preserved, sources


def build_receipt(*, memory_id: str, version_id: str, trigger: Trigger, text: str,
                  input_tokens: int, result: ContestResult, settings: Mapping[str, Setting],
                  tokenizer: str) -> MemoryCompressedData | None:
    """The ``MemoryCompressed`` payload for the contest's winner (None when nothing won)."""
    winner = result.winner
    if winner is None or winner.candidate is None or winner.measurement is None:
        return None
    m = winner.measurement
    compressed_tokens = winner.compressed_tokens or 0
    verdicts = judge(m)
    removed, preserved, sources = _parts(winner)
    receipt = CompressionReceipt(
        receipt_id=receipt_id(
            memory_id=memory_id, version_id=version_id, input_hash=hash_text(text),
            engines=[(c.engine, c.engine_version) for c in result.contestants],
            settings=settings, trigger=trigger, tokenizer=tokenizer,
        ),
        memory_id=memory_id, version_id=version_id,
        engine=winner.engine, engine_version=winner.engine_version, trigger=trigger,
        compressor_version=COMPRESSOR_VERSION, settings=_check_settings(settings),
        tokenizer=tokenizer, original_tokens=input_tokens, compressed_tokens=compressed_tokens,
        ratio=round(compressed_tokens / input_tokens, DECIMALS) if input_tokens else 1.0,
        input_hash=hash_text(text), output_hash=hash_text(winner.candidate.text),
        quality_score=m.score, quality_formula=SCORE_FORMULA,
        removed=removed, preserved=preserved,
        protected=tuple(
            ProtectedSpan(kind=r.span.kind, start=r.span.start, end=r.span.end,
                          text=r.span.text, survived=r.survived)
            for r in m.spans
        ),
        output_sources=sources, quality=m.components,
        safe_for=verdicts.safe_for, not_safe_for=verdicts.not_safe_for,
        risk_factors=verdicts.risk_factors, notes=winner.candidate.notes,
        contest=tuple(c.entry() for c in result.contestants),
    )
    return MemoryCompressedData(content=winner.candidate.text, receipt=receipt)
