"""The compressor's queries on the bus (``mnemos.svc.compressor.<name>``, forwarded by the
gateway): ``receipts`` (a memory's compressions) and ``context`` (context assembly).

Context assembly: the search layer (:mod:`libs.readmodel.search`, the gateway's own search)
ranks the namespace's live memories for the task; the stored compressions of each memory's
*head* version whose receipt is safe for the purpose are its candidate forms; the pure
:func:`~services.compressor.assembly.assemble` takes each memory at its cheapest admissible form
within the budget (a query-aware pruning, with its own receipt, for one that fits no other way),
and names every memory it left out. Pruned forms depend on the task, so their receipts are
returned with the context and not stored as events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from libs.auth import Principal
from libs.events import (
    OPERATIONS,
    AssembleContext,
    ContextPieceView,
    ContextView,
    GetReceipts,
    InvalidInput,
    LeftOutView,
    Operation,
    ReceiptsView,
    Search,
    is_blank,
    validate_namespace,
)
from libs.events.compression import MemoryCompressedData
from libs.readmodel.compressions import forms_of, receipts_of
from libs.readmodel.pool import ReadModels
from libs.readmodel.search import SearchService
from libs.runtime.bus import OperationHandler, Progress
from services.compressor.assembly import (
    CompressedForm,
    MemoryCandidate,
    Pruner,
    assemble,
    query_pruner,
)
from services.compressor.tokenizer import TokenCounter

__all__ = ["COMPRESSOR_OPERATIONS", "MAX_PRUNES", "MIN_PRUNE_SHARE", "ContextAssembler",
           "bounded_pruner", "compressor_handlers"]

MAX_PRUNES: Final = 3
"""Query-aware prunings tried per context at most (each runs the extractive engine)."""

MIN_PRUNE_SHARE: Final = 0.4
"""A memory is pruned only into room of at least this share of its original tokens: below
it, keeping every protected span is out of reach (the corpus' median ratio at span recall 1
is about 0.6), so the pruning would only fail its gates and cost time."""


def bounded_pruner(prune: Pruner, tokens: TokenCounter) -> Pruner:
    """``prune`` tried at most :data:`MAX_PRUNES` times, and only where it can succeed."""
    attempts = 0

    def bounded(candidate: MemoryCandidate, room: int) -> MemoryCompressedData | None:
        nonlocal attempts
        if attempts >= MAX_PRUNES:
            return None
        original = next((f.receipt.original_tokens for f in candidate.forms
                         if f.receipt.tokenizer == tokens.name), None)
        if original is None:
            original = tokens.count(candidate.original)
        if room < MIN_PRUNE_SHARE * original:
            return None
        attempts += 1
        return prune(candidate, room)

    return bounded


COMPRESSOR_OPERATIONS: Final[Mapping[str, Operation]] = {
    name: op for name, op in OPERATIONS.items() if op.owner == "compressor"}
"""The catalog's operations this service answers."""


class ContextAssembler:
    """``receipts`` and ``context`` over the read models."""

    def __init__(self, read_models: ReadModels, search: SearchService,
                 tokens: TokenCounter) -> None:
        self.rm = read_models
        self.search = search
        self.tokens = tokens

    async def receipts(self, ns: str, request: GetReceipts) -> ReceiptsView:
        """Every compression of the memory (of one version, if asked), oldest first."""
        await self.rm.wait_for(request.after_seq)
        async with self.rm.connection() as conn:
            return await receipts_of(conn, ns, request.memory_id, request.version_id)

    async def context(self, ns: str, request: AssembleContext) -> ContextView:
        """The context of ``request`` (see the module docstring)."""
        ns = validate_namespace(ns)
        if is_blank(request.task):
            raise InvalidInput("task must not be blank", field="task")
        found = await self.search.search(ns, Search(
            q=request.task, k=request.k, mode=request.mode, tags=request.tags,
            kind=request.kind, agent_id=request.agent_id, since=request.since,
            until=request.until, after_seq=request.after_seq))
        memories = [hit.memory for hit in found.hits]
        forms: dict[str, list[tuple[str, Any]]] = {}
        if not request.originals_only and memories:
            async with self.rm.connection() as conn:
                forms = await forms_of(conn, ns, [(m.memory_id, m.head_version_id)
                                                  for m in memories], request.purpose)
        candidates = [
            MemoryCandidate(memory_id=m.memory_id, version_id=m.head_version_id,
                            original=m.content,
                            forms=tuple(CompressedForm(content, receipt)
                                        for content, receipt in forms.get(m.memory_id, [])))
            for m in memories]
        prune = (bounded_pruner(query_pruner(request.task, tokens=self.tokens), self.tokens)
                 if request.prune and not request.originals_only else None)
        # Tokenizing and pruning are CPU work: off the loop, which also answers the bus.
        assembled = await asyncio.to_thread(
            assemble, candidates, purpose=request.purpose, budget=request.budget,
            tokens=self.tokens, allow_compressed=not request.originals_only, prune=prune)
        return ContextView(
            task=request.task, purpose=request.purpose, budget=assembled.budget,
            used_tokens=assembled.used_tokens, tokenizer=self.tokens.name,
            text=assembled.render(),
            pieces=[ContextPieceView(memory_id=p.memory_id, version_id=p.version_id,
                                     form=p.form, text=p.text, tokens=p.tokens,
                                     receipt_id=p.receipt.receipt_id if p.receipt else None)
                    for p in assembled.pieces],
            receipts=list(assembled.receipts),
            left_out=[LeftOutView(memory_id=o.memory_id, needed_tokens=o.needed_tokens,
                                  available_tokens=o.available_tokens)
                      for o in assembled.left_out])


def compressor_handlers(assembler: ContextAssembler) -> dict[str, OperationHandler]:
    """Handlers of :data:`COMPRESSOR_OPERATIONS`."""

    async def receipts(principal: Principal, ns: str, request: GetReceipts,
                       send: Progress) -> ReceiptsView:
        del principal, send
        return await assembler.receipts(ns, request)

    async def context(principal: Principal, ns: str, request: AssembleContext,
                      send: Progress) -> ContextView:
        del principal, send
        return await assembler.context(ns, request)

    return {"receipts": receipts, "context": context}
