"""Query requests and the views queries answer, as msgspec structs.

The same structs serve the NATS query subjects (JSON bodies), the HTTP routes (query strings and
JSON bodies) and the OpenAPI document, so the three cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from libs.events import Actor, MetadataValue
from libs.events.fields import KindName, Seq, ShortText, TagName

__all__ = [
    "EventView",
    "Filters",
    "GetHistory",
    "GetMemory",
    "HistoryView",
    "LinkView",
    "ListMemories",
    "MemoryPage",
    "MemoryView",
    "Search",
    "SearchHit",
    "SearchMode",
    "SearchResults",
    "VersionView",
]

SearchMode = Literal["hybrid", "dense", "lexical"]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    after_seq: Seq | None = None
    """Read-your-writes: wait until the read models include this stream sequence."""


class Filters(_Request, frozen=True, kw_only=True):
    """Filters shared by list and search: all tags, kind, creating agent, creation time range."""

    tags: tuple[TagName, ...] = ()
    kind: KindName | None = None
    agent_id: ShortText | None = None
    since: datetime | None = None
    until: datetime | None = None


class GetMemory(_Request, frozen=True, kw_only=True):
    """``get``: one memory with its provenance."""

    memory_id: str


class GetHistory(_Request, frozen=True, kw_only=True):
    """``history``: the versions and events of one memory, in stream order."""

    memory_id: str


class ListMemories(Filters, frozen=True, kw_only=True):
    """``list``: memories newest first, ``limit`` per page, ``cursor`` from the previous page."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    cursor: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class Search(Filters, frozen=True, kw_only=True):
    """``search``: natural-language retrieval; ``mode`` picks hybrid (default), dense or lexical."""

    q: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    mode: SearchMode = "hybrid"


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
