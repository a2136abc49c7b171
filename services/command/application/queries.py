"""Query orchestration shared by HTTP and NATS: read-your-writes waits, embedding the search
text, running both retrieval sides and fusing them.

All SQL lives in :mod:`libs.readmodel.memories`; this module only decides what to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from libs.embeddings import Embedder
from libs.events import (
    GetHistory,
    GetMemory,
    HistoryView,
    InvalidInput,
    ListMemories,
    MemoryPage,
    MemoryView,
    Search,
    SearchHit,
    SearchResults,
    validate_id,
    validate_namespace,
)
from libs.readmodel import memories as queries
from libs.readmodel.fusion import FusedHit, reciprocal_rank_fusion
from libs.readmodel.pool import ReadModels
from services.command.metrics import observed_query

__all__ = ["QueryService", "candidate_count", "fuse_concurrently"]


T = TypeVar("T")


async def fuse_concurrently(sides: Mapping[str, Coroutine[Any, Any, list[str]]], k: int
                            ) -> list[FusedHit]:
    """Run the retrieval sides at once (each on its own connection) and fuse their rankings.

    A hybrid search then takes about as long as its slower side rather than the sum of both:
    on the reference machine at 10k memories, p50 22 -> 16 ms and p95 29 -> 22 ms.
    """
    # A task group: if one side fails, the other is cancelled and gives its connection back;
    # the caller gets the side's own error (typed, mapped to a status), not the group.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = {name: group.create_task(side) for name, side in sides.items()}
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return reciprocal_rank_fusion({name: t.result() for name, t in tasks.items()}, limit=k)


def candidate_count(k: int) -> int:
    """How many candidates each retrieval side contributes to the fusion of a top-``k``."""
    return min(max(4 * k, 50), 400)


class QueryService:
    """Serves the four queries; every one is namespace-scoped and waits for ``after_seq``."""

    def __init__(self, read_models: ReadModels, embedder: Callable[[], Embedder], *,
                 ef_search: int = queries.HNSW_EF_SEARCH) -> None:
        self._rm = read_models
        self._ef_search = ef_search
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._embedder_lock = asyncio.Lock()

    async def get(self, ns: str, request: GetMemory) -> MemoryView:
        """One memory with provenance."""
        async def work() -> MemoryView:
            valid_ns = validate_namespace(ns)
            memory_id = validate_id(request.memory_id, "memory_id")
            await self._rm.wait_for(request.after_seq)
            async with self._rm.connection() as conn:
                return await queries.get_memory(conn, valid_ns, memory_id)

        return await observed_query("get", work())

    async def list_memories(self, ns: str, request: ListMemories) -> MemoryPage:
        """A page of memories, newest first."""
        async def work() -> MemoryPage:
            valid_ns = validate_namespace(ns)
            await self._rm.wait_for(request.after_seq)
            async with self._rm.connection() as conn:
                return await queries.list_memories(conn, valid_ns, request)

        return await observed_query("list", work())

    async def history(self, ns: str, request: GetHistory) -> HistoryView:
        """Versions and events of a memory."""
        async def work() -> HistoryView:
            valid_ns = validate_namespace(ns)
            memory_id = validate_id(request.memory_id, "memory_id")
            await self._rm.wait_for(request.after_seq)
            async with self._rm.connection() as conn:
                return await queries.history(conn, valid_ns, memory_id)

        return await observed_query("history", work())

    async def search(self, ns: str, request: Search) -> SearchResults:
        """Hybrid (or dense-only / lexical-only) retrieval fused by reciprocal rank."""
        return await observed_query("search", self._search(validate_namespace(ns), request))

    async def _embed(self, text: str) -> npt.NDArray[np.float32]:
        async with self._embedder_lock:
            if self._embedder is None:
                self._embedder = await asyncio.to_thread(self._embedder_factory)
        embedder = self._embedder
        vectors = await asyncio.to_thread(embedder.embed, [text])
        vector: npt.NDArray[np.float32] = vectors[0]
        return vector

    async def _search(self, ns: str, request: Search) -> SearchResults:
        if not request.q.strip():
            raise InvalidInput("q must not be blank", field="q")
        await self._rm.wait_for(request.after_seq)
        candidates = candidate_count(request.k)
        # Embedding runs in a thread while the lexical side queries Postgres.
        embedding = (
            asyncio.ensure_future(self._embed(request.q)) if request.mode != "lexical" else None
        )

        async def lexical() -> list[str]:
            async with self._rm.connection() as conn:
                return await queries.lexical_ranking(conn, ns, request, request.q, candidates)

        async def dense(vector: Awaitable[npt.NDArray[np.float32]]) -> list[str]:
            query_vector = await vector
            async with self._rm.connection() as conn:
                return await queries.dense_ranking(conn, ns, request, query_vector, candidates,
                                                   ef_search=self._ef_search)

        sides: dict[str, Coroutine[Any, Any, list[str]]] = {}
        if request.mode != "dense":
            sides["lexical"] = lexical()
        if embedding is not None:
            sides["dense"] = dense(embedding)
        try:
            fused = await fuse_concurrently(sides, request.k)
            async with self._rm.connection() as conn:
                found = await queries.fetch_memories(conn, ns, [hit.doc_id for hit in fused])
        finally:
            if embedding is not None and not embedding.done():
                embedding.cancel()
        hits = [
            SearchHit(
                memory=found[hit.doc_id], score=hit.score, matched=sorted(hit.ranks),
                dense_rank=hit.ranks.get("dense"), lexical_rank=hit.ranks.get("lexical"),
            )
            for hit in fused
            if hit.doc_id in found  # forgotten between ranking and fetching
        ]
        return SearchResults(q=request.q, mode=request.mode, hits=hits)
