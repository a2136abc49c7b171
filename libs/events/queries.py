"""Query requests: what callers ask the read side, over NATS bodies, HTTP query strings and
JSON bodies alike (the HTTP routes and the OpenAPI document are generated from these structs,
so the transports cannot drift apart). One name per field, everywhere.

A ``ref`` names a version of a memory: a branch name (its head) or a version id; a branch name
wins when both could match.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from libs.dag import DEFAULT_BRANCH
from libs.events.fields import KindName, MemoryId, Seq, ShortText, TagName, VersionId

__all__ = [
    "CountMemories",
    "Filters",
    "GetBranches",
    "GetCommonAncestor",
    "GetDiff",
    "GetHistory",
    "GetLog",
    "GetMemory",
    "GetVersion",
    "ListMemories",
    "Ref",
    "Search",
    "SearchMode",
]

SearchMode = Literal["hybrid", "dense", "lexical"]
Ref = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")]


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
