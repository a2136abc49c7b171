"""The gateway's read-side queries: read-your-writes waits, then the read-model query layer
(:mod:`libs.readmodel`; search is :class:`libs.readmodel.search.SearchService`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from libs.embeddings import Embedder
from libs.events import (
    CountMemories,
    GetHistory,
    GetMemory,
    HistoryView,
    ListMemories,
    MemoryCount,
    MemoryPage,
    MemoryView,
    Search,
    SearchResults,
    validate_id,
    validate_namespace,
)
from libs.events.reasoning import ListModels, ModelsView
from libs.readmodel import memories as queries
from libs.readmodel import registry_queries
from libs.readmodel.pool import ReadModels
from libs.readmodel.search import SearchService
from services.command.metrics import observed_query

__all__ = ["QueryService"]


T = TypeVar("T")


class QueryService:
    """Serves the four queries; every one is namespace-scoped and waits for ``after_seq``."""

    def __init__(self, read_models: ReadModels, embedder: Callable[[], Embedder], *,
                 ef_search: int = queries.HNSW_EF_SEARCH) -> None:
        self._rm = read_models
        self._search = SearchService(read_models, embedder, ef_search=ef_search)

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

    async def count_memories(self, ns: str, request: CountMemories) -> MemoryCount:
        """How many live memories match the filters."""
        async def work() -> MemoryCount:
            valid_ns = validate_namespace(ns)
            await self._rm.wait_for(request.after_seq)
            async with self._rm.connection() as conn:
                return await queries.count_memories(conn, valid_ns, request)

        return await observed_query("count", work())

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
        return await observed_query("search", self._search.search(ns, request))

    async def models(self, ns: str, request: ListModels) -> ModelsView:
        """The model registry (shared by every namespace; the reader needs read on ``ns``)."""
        async def work() -> ModelsView:
            validate_namespace(ns)
            await self._rm.wait_for(request.after_seq)
            async with self._rm.connection() as conn:
                return await registry_queries.list_models(conn, request)

        return await observed_query("models", work())
