"""Requests and views of the version-DAG queries: log, branches, version, diff, common ancestor.

A ``ref`` names a version of the memory: a branch name (its head) or a version id; a branch name
wins when both could match. The same structs serve NATS bodies, HTTP query strings and OpenAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from libs.dag import DEFAULT_BRANCH, DiffHunk
from libs.events import Actor
from libs.events.fields import Seq, VersionId

__all__ = [
    "AncestorView",
    "BranchView",
    "BranchesView",
    "DagVersionView",
    "DiffView",
    "GetBranches",
    "GetCommonAncestor",
    "GetDiff",
    "GetLog",
    "GetVersion",
    "LogEntry",
    "LogView",
]

Ref = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    memory_id: str
    after_seq: Seq | None = None
    """Read-your-writes: wait until the read models include this stream sequence."""


class GetLog(_Request, frozen=True, kw_only=True):
    """``log``: ``ref`` and its ancestors, newest first; ``cursor`` is the last id of a page."""

    ref: Ref = DEFAULT_BRANCH
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    cursor: VersionId | None = None


class GetBranches(_Request, frozen=True, kw_only=True):
    """``branches``: every branch of a memory with its head."""


class GetVersion(_Request, frozen=True, kw_only=True):
    """``version``: one version (a version id, or a branch name for its head)."""

    ref: Ref


class GetDiff(_Request, frozen=True, kw_only=True):
    """``diff``: line changes from ``from_ref`` to ``to_ref``."""

    from_ref: Ref
    to_ref: Ref
    context: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3


class GetCommonAncestor(_Request, frozen=True, kw_only=True):
    """``common_ancestor``: the merge base of two refs (and all lowest common ancestors)."""

    a: Ref
    b: Ref


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
