"""Views: what queries answer, as frozen msgspec structs (also the OpenAPI response schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from libs.dag import DiffHunk
from libs.events.model import Actor, MetadataValue
from libs.events.queries import SearchMode

__all__ = [
    "AncestorView",
    "BranchView",
    "BranchesView",
    "DagVersionView",
    "DiffView",
    "EventView",
    "HistoryView",
    "LinkView",
    "LogEntry",
    "LogView",
    "MemoryCount",
    "MemoryPage",
    "MemoryView",
    "SearchHit",
    "SearchResults",
    "VersionView",
]


class LinkView(msgspec.Struct, frozen=True, kw_only=True):
    """An edge from a memory to another live memory of the same namespace."""

    target_memory_id: str
    relation: str
    seq: int
    created_at: datetime


class MemoryView(msgspec.Struct, frozen=True, kw_only=True):
    """A served memory: head content plus provenance (who created/updated it, from where)."""

    ns: str
    memory_id: str
    kind: str
    content: str
    content_hash: str
    head_version_id: str
    version_count: int
    revision: int
    tags: list[str]
    metadata: dict[str, MetadataValue]
    source: str | None
    agent_id: str | None
    created_by: Actor
    updated_by: Actor
    created_command_id: str
    created_at: datetime
    updated_at: datetime
    links: list[LinkView] = []


class MemoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``list``; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[MemoryView]
    next_cursor: str | None


class MemoryCount(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``count``."""

    count: int


class VersionView(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a memory's DAG."""

    version_id: str
    parent_ids: list[str]
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue]
    reason: str | None
    actor: Actor
    command_id: str
    event_id: str
    seq: int
    created_at: datetime


class EventView(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a memory as projected (the stream holds the canonical bytes)."""

    seq: int
    event_id: str
    type: str
    schema: int
    actor: Actor
    command_id: str
    correlation_id: str
    at: datetime
    data: dict[str, Any]


class HistoryView(msgspec.Struct, frozen=True, kw_only=True):
    """``history``: versions and events ordered by stream sequence."""

    memory_id: str
    versions: list[VersionView]
    events: list[EventView]


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    """A search result: fused score, which sides matched, and each side's rank (1-based)."""

    memory: MemoryView
    score: float
    matched: list[str]
    dense_rank: int | None
    lexical_rank: int | None


class SearchResults(msgspec.Struct, frozen=True, kw_only=True):
    """``search``: hits best first."""

    q: str
    mode: SearchMode
    hits: list[SearchHit]


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One version in a log: its place in the DAG and how it was made."""

    version_id: str
    parent_ids: list[str]
    seq: int
    origin: str
    branch: str
    strategy: str | None
    reverted_to: str | None
    content_hash: str
    actor: Actor
    created_at: datetime


class LogView(msgspec.Struct, frozen=True, kw_only=True):
    """A page of a log; pass ``next_cursor`` back as ``cursor`` (``None``: the end)."""

    memory_id: str
    head: str
    entries: list[LogEntry]
    next_cursor: str | None


class BranchView(msgspec.Struct, frozen=True, kw_only=True):
    """A branch and its head."""

    branch: str
    head_version_id: str
    from_version_id: str
    created_seq: int
    updated_seq: int
    updated_at: datetime


class BranchesView(msgspec.Struct, frozen=True, kw_only=True):
    """``branches``: sorted by name."""

    memory_id: str
    branches: list[BranchView]


class DagVersionView(msgspec.Struct, frozen=True, kw_only=True):
    """One version with its content and provenance."""

    version_id: str
    parent_ids: list[str]
    content: str
    content_hash: str
    metadata: dict[str, str | int | float | bool | None]
    origin: str
    branch: str
    strategy: str | None
    base_version_id: str | None
    reverted_to: str | None
    actor: Actor
    command_id: str
    event_id: str
    seq: int
    created_at: datetime


class DiffView(msgspec.Struct, frozen=True, kw_only=True):
    """Typed hunks and the unified rendering of the change ``from_version`` -> ``to_version``."""

    memory_id: str
    from_version: str
    to_version: str
    added: int
    removed: int
    hunks: list[DiffHunk]
    unified: str


class AncestorView(msgspec.Struct, frozen=True, kw_only=True):
    """The merge base of ``a`` and ``b`` (``None``: unrelated) and all lowest common ancestors."""

    memory_id: str
    a: str
    b: str
    base: str | None
    lowest: list[str]
