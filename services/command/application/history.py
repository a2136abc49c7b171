"""The version-DAG queries (log, branches, version, diff, common ancestor) over the read models.

The same rules as :mod:`libs.readmodel.memories`: every statement is scoped by ``ns = %(ns)s``
and every query first checks that the memory is live in that namespace (unknown, forgotten and
other-namespace memories are all :class:`NotFound`). Ancestry walks run on a
:class:`~libs.dag.VersionGraph` of ``(version_id, parent_ids, seq)`` rows, cached per memory and
extended with the rows projected since: versions are append-only, so a cached graph never goes
stale, it only lags (and is caught up on every query).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final, TypeVar

import msgspec

from libs.dag import VersionGraph, VersionNode, diff_texts
from libs.events import (
    AncestorView,
    BranchesView,
    BranchView,
    DagVersionView,
    DiffView,
    GetBranches,
    GetCommonAncestor,
    GetDiff,
    GetLog,
    GetVersion,
    LogEntry,
    LogView,
    validate_id,
    validate_namespace,
)
from libs.readmodel import history as rm
from libs.readmodel.pool import Conn, ReadModels
from services.command.metrics import observed_query

__all__ = ["HistoryService"]


GRAPH_CACHE_SIZE: Final = 64
"""Memories whose version graph is kept between queries."""

T = TypeVar("T")


def _version_view(row: dict[str, Any]) -> DagVersionView:
    return msgspec.convert({**row, "parent_ids": list(row["parent_ids"])}, DagVersionView)


class HistoryService:
    """Serves the DAG queries; namespace-scoped, with read-your-writes ``after_seq``."""

    def __init__(self, read_models: ReadModels, cache_size: int = GRAPH_CACHE_SIZE) -> None:
        self._rm = read_models
        self._graphs: OrderedDict[tuple[str, str], tuple[VersionGraph, int]] = OrderedDict()
        self._cache_size = cache_size


    async def _graph(self, conn: Conn, ns: str, memory_id: str) -> VersionGraph:
        """The memory's version graph, caught up with the read model."""
        key = (ns, memory_id)
        graph, last_seq = self._graphs.get(key, (VersionGraph(), 0))
        for version, parents, seq in await rm.version_nodes(conn, ns, memory_id, last_seq):
            graph.add(VersionNode(version, parents, seq))
            last_seq = max(last_seq, seq)
        current = self._graphs.get(key)
        if current is None or current[1] <= last_seq:
            self._graphs[key] = (graph, last_seq)
        self._graphs.move_to_end(key)
        while len(self._graphs) > self._cache_size:
            self._graphs.popitem(last=False)
        return graph

    async def log(self, ns: str, request: GetLog) -> LogView:
        """A page of the history of ``ref``, newest first."""
        async def work() -> LogView:
            memory_id = await self._start(ns, request.memory_id, request.after_seq)
            async with self._rm.connection() as conn:
                await rm.require_live(conn, ns, memory_id)
                head = await rm.resolve_ref(conn, ns, memory_id, request.ref)
                graph = await self._graph(conn, ns, memory_id)
                page = graph.log(head, request.limit, request.cursor)
                ids = [node.version_id for node in page.entries]
                rows = await rm.log_rows(conn, ns, memory_id, ids)
            entries = [msgspec.convert(rows[i], LogEntry) for i in ids]
            return LogView(memory_id=memory_id, head=head, entries=entries,
                           next_cursor=page.next_cursor)

        return await observed_query("log", work())

    async def branches(self, ns: str, request: GetBranches) -> BranchesView:
        """Every branch of the memory with its head, by name."""
        async def work() -> BranchesView:
            memory_id = await self._start(ns, request.memory_id, request.after_seq)
            async with self._rm.connection() as conn:
                await rm.require_live(conn, ns, memory_id)
                rows = await rm.branch_rows(conn, ns, memory_id)
            return BranchesView(memory_id=memory_id,
                                branches=[msgspec.convert(r, BranchView) for r in rows])

        return await observed_query("branches", work())

    async def version(self, ns: str, request: GetVersion) -> DagVersionView:
        """One version with content and provenance."""
        async def work() -> DagVersionView:
            memory_id = await self._start(ns, request.memory_id, request.after_seq)
            async with self._rm.connection() as conn:
                await rm.require_live(conn, ns, memory_id)
                version = await rm.resolve_ref(conn, ns, memory_id, request.ref)
                rows = await rm.version_rows(conn, ns, memory_id, [version])
            return _version_view(rows[version])

        return await observed_query("version", work())

    async def diff(self, ns: str, request: GetDiff) -> DiffView:
        """Typed hunks and unified text from one version to another."""
        async def work() -> DiffView:
            memory_id = await self._start(ns, request.memory_id, request.after_seq)
            async with self._rm.connection() as conn:
                await rm.require_live(conn, ns, memory_id)
                old = await rm.resolve_ref(conn, ns, memory_id, request.from_ref)
                new = await rm.resolve_ref(conn, ns, memory_id, request.to_ref)
                rows = await rm.version_rows(conn, ns, memory_id, [old, new])
            diff = diff_texts(rows[old]["content"], rows[new]["content"],
                              context=request.context)
            return DiffView(memory_id=memory_id, from_version=old, to_version=new,
                            added=diff.added, removed=diff.removed, hunks=list(diff.hunks),
                            unified=diff.unified(old, new))

        return await observed_query("diff", work())

    async def common_ancestor(self, ns: str, request: GetCommonAncestor) -> AncestorView:
        """The merge base of two refs and every lowest common ancestor, newest first."""
        async def work() -> AncestorView:
            memory_id = await self._start(ns, request.memory_id, request.after_seq)
            async with self._rm.connection() as conn:
                await rm.require_live(conn, ns, memory_id)
                a = await rm.resolve_ref(conn, ns, memory_id, request.a)
                b = await rm.resolve_ref(conn, ns, memory_id, request.b)
                graph = await self._graph(conn, ns, memory_id)
            lowest = list(graph.common_ancestors(a, b))
            return AncestorView(memory_id=memory_id, a=a, b=b,
                                base=lowest[0] if lowest else None, lowest=lowest)

        return await observed_query("common_ancestor", work())

    async def _start(self, ns: str, memory_id: str, after_seq: int | None) -> str:
        validate_namespace(ns)
        memory_id = validate_id(memory_id, "memory_id")
        await self._rm.wait_for(after_seq)
        return memory_id
