"""Search over the read models: the lexical and dense sides run at once, then fused.

One implementation for every reader (the gateway's ``search`` query, the compressor's context
assembly, consultations): the query text is embedded in a thread while the lexical side runs,
each side uses its own pooled connection, and the fused ids are fetched as served memories.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from libs.embeddings import Embedder
from libs.events import InvalidInput, Search, SearchHit, SearchResults, validate_namespace
from libs.readmodel import memories as queries
from libs.readmodel.fusion import FusedHit, reciprocal_rank_fusion
from libs.readmodel.pool import ReadModels

__all__ = ["SearchService", "candidate_count", "fuse_concurrently"]


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


class SearchService:
    """Hybrid (or dense-only / lexical-only) search of one namespace's served memories."""

    def __init__(self, read_models: ReadModels, embedder: Callable[[], Embedder], *,
                 ef_search: int = queries.HNSW_EF_SEARCH) -> None:
        self._rm = read_models
        self._ef_search = ef_search
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._embedder_lock = asyncio.Lock()

    async def search(self, ns: str, request: Search) -> SearchResults:
        """The fused hits of ``request`` in ``ns`` (waiting for ``after_seq`` first)."""
        return await self._search(validate_namespace(ns), request)

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
