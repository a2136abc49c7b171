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
    """A memory that did not fit: the fewest tokens it needed and what was left.

    ``needed_tokens`` is None for memories ranked after the budget was spent to the last token:
    they are not sized, so a long ranked list costs nothing once the context is full.
    """

    memory_id: str
    needed_tokens: int | None
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


def _eligible(candidate: MemoryCandidate, purpose: str) -> list[CompressedForm]:
    """Forms whose receipt names this memory version and the purpose (cheap checks only)."""
    return [
        form for form in candidate.forms
        if form.receipt.version_id == candidate.version_id
        and form.receipt.memory_id == candidate.memory_id
        and form.receipt.is_safe_for(purpose)
    ]


def _take(candidate: MemoryCandidate, purpose: str, allow_compressed: bool, room: int,
          tokens: TokenCounter) -> tuple[ContextPiece | None, int]:
    """The cheapest admissible form that fits ``room`` (or None) and the cheapest size.

    Sizes come from the receipts when they were counted with the same tokenizer, so a ranked
    list of memories with receipts is not tokenized again; the hashes that make a form
    admissible (input and output blake3) are checked only for the form that is taken.
    """
    forms = _eligible(candidate, purpose) if allow_compressed else []
    same = [f for f in forms if f.receipt.tokenizer == tokens.name]
    original_size = same[0].receipt.original_tokens if same else tokens.count(candidate.original)
    options: list[tuple[int, int, CompressedForm | None]] = [(original_size, 0, None)]
    for index, form in enumerate(forms, start=1):
        size = (form.receipt.compressed_tokens if form.receipt.tokenizer == tokens.name
                else tokens.count(form.content))
        options.append((size, index, form))
    options.sort(key=lambda option: (option[0], option[1]))
    original_hash: str | None = None
    for size, _, option in options:
        if size > room:
            break
        original_hash = original_hash or hash_text(candidate.original)
        if option is None:
            counted = size if same and same[0].receipt.input_hash == original_hash else (
                tokens.count(candidate.original))
            if counted <= room:
                return ContextPiece(memory_id=candidate.memory_id,
                                    version_id=candidate.version_id, form="original",
                                    text=candidate.original, tokens=counted), options[0][0]
        elif (option.receipt.input_hash == original_hash
              and option.receipt.output_hash == hash_text(option.content)):
            return ContextPiece(memory_id=candidate.memory_id, version_id=candidate.version_id,
                                form="compressed", text=option.content, tokens=size,
                                receipt=option.receipt), options[0][0]
    return None, options[0][0]


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
        if room <= 0:
            left_out.append(LeftOut(memory_id=candidate.memory_id, needed_tokens=None,
                                    available_tokens=0))
            continue
        piece, cheapest = _take(candidate, purpose, allow_compressed, room, tokens)
        if piece is None and prune is not None and allow_compressed:
            piece = _pruned(candidate, room, purpose, prune, tokens)
        if piece is None:
            left_out.append(LeftOut(memory_id=candidate.memory_id, needed_tokens=cheapest,
                                    available_tokens=room))
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
