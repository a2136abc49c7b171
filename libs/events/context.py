"""The compressor's queries (DESIGN.md section 4): a memory's compressions with their receipts,
and context assembly ("context for this task, for this purpose, within N tokens").

Both are answered by the compressor service (``mnemos.svc.compressor.<name>``, forwarded by the
gateway). ``get`` always serves the original; a compressed form is only ever served here, and
in a context only where its receipt is safe for the stated purpose.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

import msgspec

from libs.events.compression import CompressionReceipt
from libs.events.fields import MemoryId, Seq, VersionId
from libs.events.queries import Filters, SearchMode

__all__ = [
    "MAX_CONTEXT_BUDGET",
    "PURPOSE_NAMES",
    "AssembleContext",
    "CompressionView",
    "ContextPieceView",
    "ContextView",
    "GetReceipts",
    "LeftOutView",
    "Purpose",
    "ReceiptsView",
]

Purpose = Literal["factual_recall", "financial", "legal", "compliance", "code", "summary",
                  "brainstorming"]
"""What a context is for; each has its own safety rules (``services/compressor/purposes.py``)."""

PURPOSE_NAMES: Final[tuple[str, ...]] = get_args(Purpose)
"""Every :data:`Purpose`."""

MAX_CONTEXT_BUDGET: Final = 200_000
"""Largest token budget a context may ask for."""


class GetReceipts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``receipts``: every compression of a memory (of one version, if given), oldest first."""

    memory_id: MemoryId
    version_id: VersionId | None = None
    after_seq: Seq | None = None
    """Read-your-writes: wait until the read models include this stream sequence."""


class CompressionView(msgspec.Struct, frozen=True, kw_only=True):
    """One compression: the compressed text, its receipt, the event that recorded it."""

    content: str
    receipt: CompressionReceipt
    event_id: str
    seq: int


class ReceiptsView(msgspec.Struct, frozen=True, kw_only=True):
    """``receipts``: the memory's head version and its compressions (the original is ``get``)."""

    memory_id: str
    head_version_id: str
    compressions: list[CompressionView]


class AssembleContext(Filters, frozen=True, kw_only=True):
    """``context``: the memories most relevant to ``task`` (the search layer, filters as in
    ``search``), each in the cheapest form whose receipt is safe for ``purpose``, within
    ``budget`` tokens. ``originals_only`` serves no compressed or pruned form; ``prune``
    allows a query-aware pruning (with its own receipt) of a memory that fits no other way."""

    task: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    purpose: Purpose
    budget: Annotated[int, msgspec.Meta(ge=0, le=MAX_CONTEXT_BUDGET)]
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    mode: SearchMode = "hybrid"
    prune: bool = True
    originals_only: bool = False


class ContextPieceView(msgspec.Struct, frozen=True, kw_only=True):
    """One memory in the context, in the form taken (``receipt_id`` for compressed/pruned)."""

    memory_id: str
    version_id: str
    form: Literal["original", "compressed", "pruned"]
    text: str
    tokens: int
    receipt_id: str | None = None


class LeftOutView(msgspec.Struct, frozen=True, kw_only=True):
    """A relevant memory left out for lack of budget (``needed_tokens`` None: not sized)."""

    memory_id: str
    needed_tokens: int | None
    available_tokens: int


class ContextView(msgspec.Struct, frozen=True, kw_only=True):
    """``context``: the text (pieces joined by a blank line), never over ``budget`` tokens of
    ``tokenizer``; the receipt of every compressed or pruned piece; what was left out."""

    task: str
    purpose: Purpose
    budget: int
    used_tokens: int
    tokenizer: str
    text: str
    pieces: list[ContextPieceView]
    receipts: list[CompressionReceipt]
    left_out: list[LeftOutView]
