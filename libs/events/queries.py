"""Query requests: what callers ask the read side, over NATS bodies, HTTP query strings and
JSON bodies alike (the HTTP routes and the OpenAPI document are generated from these structs,
so the transports cannot drift apart). One name per field, everywhere.

A ``ref`` names a version of a memory: a branch name (its head) or a version id; a branch name
wins when both could match.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from libs.dag import DEFAULT_BRANCH
from libs.events.fields import (
    Instant,
    KindName,
    MemoryId,
    Seq,
    ShortText,
    TagName,
    ThreadId,
    ThreadPosition,
    VersionId,
)

__all__ = [
    "CountMemories",
    "Filters",
    "GetBranches",
    "GetCommonAncestor",
    "GetDiff",
    "GetHistory",
    "GetLog",
    "GetMemory",
    "GetThread",
    "GetVersion",
    "ListMemories",
    "RecencyClock",
    "Ref",
    "Search",
    "SearchMode",
]

SearchMode = Literal["hybrid", "dense", "lexical"]
RecencyClock = Literal["occurred", "recorded"]
"""Which clock a recency preference reads: when it happened, or when it was recorded."""
MAX_CONTEXT: Final = 10
"""Most neighbour turns a search returns on each side of a hit."""
Ref = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    after_seq: Seq | None = None
    """Read-your-writes: wait until the read models include this stream sequence."""


class Filters(_Request, frozen=True, kw_only=True):
    """Filters shared by list and search: all tags, kind, creating agent, creation time range
    (``since``/``until``: when it was recorded), occurrence time range (``occurred_since``
    inclusive, ``occurred_until`` exclusive: when it happened) and thread."""

    tags: tuple[TagName, ...] = ()
    kind: KindName | None = None
    agent_id: ShortText | None = None
    since: datetime | None = None
    until: datetime | None = None
    occurred_since: Instant | None = None
    occurred_until: Instant | None = None
    thread: ThreadId | None = None


class GetMemory(_Request, frozen=True, kw_only=True):
    """``get``: one memory with its provenance."""

    memory_id: MemoryId


class GetHistory(_Request, frozen=True, kw_only=True):
    """``history``: the versions and events of one memory, in stream order."""

    memory_id: MemoryId


class ListMemories(Filters, frozen=True, kw_only=True):
    """``list``: memories newest first, ``limit`` per page, ``cursor`` from the previous page."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    cursor: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class CountMemories(Filters, frozen=True, kw_only=True):
    """``count``: how many live memories match the filters."""


class Search(Filters, frozen=True, kw_only=True):
    """``search``: natural-language retrieval; ``mode`` picks hybrid (default), dense or lexical."""

    q: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    mode: SearchMode = "hybrid"
    context: Annotated[int, msgspec.Meta(ge=0, le=MAX_CONTEXT)] = 0
    """Neighbour turns to return before and after each hit, within its thread."""
    prefer_recent: RecencyClock | None = None
    """Favour recent memories on this clock (``None``: no time preference)."""
    half_life_days: Annotated[float, msgspec.Meta(gt=0.0, le=36_500.0)] | None = None
    """Age at which the recency preference halves its boost (default: the server's setting)."""
    as_of: Instant | None = None
    """The "now" ages are measured from (default: the time of the search)."""


class GetThread(_Request, frozen=True, kw_only=True):
    """``thread``: a thread's memories in turn order from ``from_position``, ``limit`` per page;
    ``cursor`` (the previous page's ``next_cursor``) continues after its last memory."""

    thread: ThreadId
    from_position: ThreadPosition | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    cursor: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class _MemoryRequest(_Request, frozen=True, kw_only=True):
    memory_id: MemoryId


class GetLog(_MemoryRequest, frozen=True, kw_only=True):
    """``log``: ``ref`` and its ancestors, newest first; ``cursor`` is the last id of a page."""

    ref: Ref = DEFAULT_BRANCH
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    cursor: VersionId | None = None


class GetBranches(_MemoryRequest, frozen=True, kw_only=True):
    """``branches``: every branch of a memory with its head."""


class GetVersion(_MemoryRequest, frozen=True, kw_only=True):
    """``version``: one version (a version id, or a branch name for its head)."""

    ref: Ref


class GetDiff(_MemoryRequest, frozen=True, kw_only=True):
    """``diff``: line changes from ``from`` to ``to`` (two refs)."""

    from_ref: Ref = msgspec.field(name="from")
    to_ref: Ref = msgspec.field(name="to")
    context: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3


class GetCommonAncestor(_MemoryRequest, frozen=True, kw_only=True):
    """``common_ancestor``: the merge base of two refs (and all lowest common ancestors)."""

    a: Ref
    b: Ref
