"""Context assembly, the pure part: ranked memories in, a context within a token budget out.

For each memory, in the caller's rank order, the cheapest admissible form is taken:

- a compressed form is admissible only if its receipt is for this very version and input (version
  id, blake3 of the original), its content is what the receipt hashed, and the receipt lists the
  requested purpose in ``safe_for``; the original is always admissible;
- a form is taken only if it fits what is left of the budget (pieces are joined by
  :data:`SEPARATOR`, whose tokens count too);
- when nothing fits and a pruner is given, the original is pruned to fit (query-aware); the pruned
  form gets its own receipt (trigger ``context``) and is taken only if that receipt is safe for
  the purpose;
- otherwise the memory is left out, and listed with the tokens it would have needed.

The budget is never exceeded: the joined context is counted again at the end and trailing
pieces are dropped should joining ever cost more than the parts did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

import msgspec

from libs.events.compression import CompressionReceipt, MemoryCompressedData
from libs.events.errors import InvalidInput
from services.compressor.compressor import CompressionSettings, Compressor, Subject
from services.compressor.engines.extractive import ExtractiveEngine
from services.compressor.purposes import PURPOSES
from services.compressor.quality import Embed
from services.compressor.receipt import hash_text
from services.compressor.tokenizer import TokenCounter

__all__ = [
    "SEPARATOR",
    "CompressedForm",
    "Context",
    "ContextPiece",
    "LeftOut",
    "MemoryCandidate",
    "Pruner",
    "assemble",
    "query_pruner",
]

SEPARATOR: Final = "\n\n"
"""What joins the pieces of a context."""


class CompressedForm(msgspec.Struct, frozen=True):
    """A stored compression of a memory version and its receipt."""

    content: str
    receipt: CompressionReceipt


class MemoryCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """A memory ranked by the search layer, with its original and its compressed forms."""

    memory_id: str
    version_id: str
    original: str
    forms: tuple[CompressedForm, ...] = ()


class ContextPiece(msgspec.Struct, frozen=True, kw_only=True):
    """One memory in the context, in the form it was taken in."""

    memory_id: str
    version_id: str
    form: Literal["original", "compressed", "pruned"]
    text: str
    tokens: int
    receipt: CompressionReceipt | None = None


class LeftOut(msgspec.Struct, frozen=True, kw_only=True):
    """A memory that did not fit: the fewest tokens it needed and what was left."""

    memory_id: str
    needed_tokens: int
    available_tokens: int


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """The assembled context: pieces in rank order, receipts of every compressed piece."""

    purpose: str
    budget: int
    used_tokens: int
    pieces: tuple[ContextPiece, ...]
    receipts: tuple[CompressionReceipt, ...]
    left_out: tuple[LeftOut, ...]

    def render(self) -> str:
        """The context text: the pieces joined by :data:`SEPARATOR`."""
        return SEPARATOR.join(piece.text for piece in self.pieces)


Pruner = Callable[[MemoryCandidate, int], MemoryCompressedData | None]
"""Prune a memory's original to at most the given tokens; None when it cannot."""


def _admissible(candidate: MemoryCandidate, purpose: str) -> list[CompressedForm]:
    original_hash = hash_text(candidate.original)
    return [
        form for form in candidate.forms
        if form.receipt.version_id == candidate.version_id
        and form.receipt.memory_id == candidate.memory_id
        and form.receipt.input_hash == original_hash
        and form.receipt.output_hash == hash_text(form.content)
        and form.receipt.is_safe_for(purpose)
    ]


def _options(candidate: MemoryCandidate, purpose: str, allow_compressed: bool,
             tokens: TokenCounter) -> list[ContextPiece]:
    """Every admissible form as a piece, cheapest first (the original wins ties).

    Token counts come from a verified receipt of the same tokenizer when there is one, so a
    memory with receipts is not tokenized again.
    """
    admissible = _admissible(candidate, purpose) if allow_compressed else []
    counted_original = next((f.receipt.original_tokens for f in admissible
                             if f.receipt.tokenizer == tokens.name), None)
    options = [ContextPiece(
        memory_id=candidate.memory_id, version_id=candidate.version_id, form="original",
        text=candidate.original,
        tokens=counted_original if counted_original is not None
        else tokens.count(candidate.original))]
    if allow_compressed:
        for form in admissible:
            counted = (form.receipt.compressed_tokens if form.receipt.tokenizer == tokens.name
                       else tokens.count(form.content))
            options.append(ContextPiece(
                memory_id=candidate.memory_id, version_id=candidate.version_id,
                form="compressed", text=form.content, tokens=counted, receipt=form.receipt))
    return sorted(options, key=lambda p: (p.tokens, p.form != "original"))


def _pruned(candidate: MemoryCandidate, room: int, purpose: str, prune: Pruner,
            tokens: TokenCounter) -> ContextPiece | None:
    data = prune(candidate, room)
    if data is None or not data.receipt.is_safe_for(purpose):
        return None
    count = tokens.count(data.content)
    if count > room:
        return None
    return ContextPiece(memory_id=candidate.memory_id, version_id=candidate.version_id,
                        form="pruned", text=data.content, tokens=count, receipt=data.receipt)


def assemble(candidates: Sequence[MemoryCandidate], *, purpose: str, budget: int,
             tokens: TokenCounter, allow_compressed: bool = True,
             prune: Pruner | None = None) -> Context:
    """The context for ``purpose`` within ``budget`` tokens (see the module docstring).

    ``allow_compressed=False`` is for callers that asked for originals: no compressed or
    pruned form is served then.
    """
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown purpose {purpose!r}", purposes=sorted(PURPOSES))
    if budget < 0:
        raise InvalidInput("budget must be >= 0 tokens", budget=budget)
    separator = tokens.count(SEPARATOR)
    pieces: list[ContextPiece] = []
    left_out: list[LeftOut] = []
    used = 0
    for candidate in candidates:
        joint = separator if pieces else 0
        room = budget - used - joint
        options = _options(candidate, purpose, allow_compressed, tokens)
        piece = next((p for p in options if p.tokens <= room), None)
        if piece is None and prune is not None and allow_compressed and room > 0:
            piece = _pruned(candidate, room, purpose, prune, tokens)
        if piece is None:
            left_out.append(LeftOut(memory_id=candidate.memory_id,
                                    needed_tokens=options[0].tokens,
                                    available_tokens=max(0, room)))
            continue
        pieces.append(piece)
        used += joint + piece.tokens
    return _within_budget(purpose, budget, pieces, left_out, tokens)


def _within_budget(purpose: str, budget: int, pieces: list[ContextPiece],
                   left_out: list[LeftOut], tokens: TokenCounter) -> Context:
    """Count the joined text; drop trailing pieces while it is over the budget."""
    while pieces:
        used = tokens.count(SEPARATOR.join(p.text for p in pieces))
        if used <= budget:
            break
        last = pieces.pop()
        left_out.append(LeftOut(memory_id=last.memory_id, needed_tokens=last.tokens,
                                available_tokens=0))
    else:
        used = 0
    return Context(
        purpose=purpose, budget=budget, used_tokens=used, pieces=tuple(pieces),
        receipts=tuple(p.receipt for p in pieces if p.receipt is not None),
        left_out=tuple(left_out),
    )


def query_pruner(query: str, *, tokens: TokenCounter, embed: Embed | None = None,
                 embed_name: str = "embedder") -> Pruner:
    """A :data:`Pruner` that runs the extractive engine towards the query, trigger ``context``.

    The target ratio is the room over the original's tokens, so each call has its own settings
    (and receipt id).
    """
    def prune(candidate: MemoryCandidate, room: int) -> MemoryCompressedData | None:
        original = tokens.count(candidate.original)
        if original == 0 or room <= 0:
            return None
        ratio = min(1.0, room / original)
        compressor = Compressor(
            engines=(ExtractiveEngine(),), tokens=tokens, embed=embed, embed_name=embed_name,
            settings=CompressionSettings(target_ratio=round(ratio, 6)),
        )
        subject = Subject(memory_id=candidate.memory_id, version_id=candidate.version_id,
                          trigger="context")
        return compressor.offline(subject, candidate.original, query).data

    return prune
