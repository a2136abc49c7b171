"""Constrained field types shared by commands and queries (validated on decode)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec

__all__ = [
    "MAX_THREAD_POSITION",
    "Instant",
    "KindName",
    "MemoryId",
    "RelationName",
    "Seq",
    "ShortText",
    "TagName",
    "ThreadId",
    "ThreadPosition",
    "VersionId",
    "utc_instant",
]

TagName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
"""A tag: letters, digits and ``_.:/-``, up to 64 characters."""

KindName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,32}$")]
"""A memory kind such as ``note``, ``preference`` or ``fact``."""

RelationName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,32}$")]
"""The relation of a link between memories."""

ShortText = Annotated[str, msgspec.Meta(max_length=1024)]
"""Free text with a bound (reasons, agent and model names)."""

Seq = Annotated[int, msgspec.Meta(ge=0)]
"""A stream sequence or a memory revision (``expected_version``)."""

VersionId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
"""A content-addressed version id (see :mod:`libs.events.versions`)."""

MemoryId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")]
"""A memory id: a subject token (``[a-z0-9_-]``, up to 64 characters; the gateway makes UUIDv7s)."""

MAX_THREAD_POSITION: Final = 2**53 - 1
"""The largest thread position: every JSON reader holds it exactly (an IEEE double's integers)."""

ThreadId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:/@-]{1,128}$")]
"""A thread (a session, a conversation): letters, digits and ``_.:/@-``, up to 128 characters."""

ThreadPosition = Annotated[int, msgspec.Meta(ge=0, le=MAX_THREAD_POSITION)]
"""A memory's place in its thread (turn order): 0 .. 2^53 - 1."""

Instant = Annotated[datetime, msgspec.Meta(tz=True)]
"""A point in time that names its timezone (RFC 3339 with an offset); a naive one is invalid
input, since the same wall clock means different instants in different places."""


def utc_instant(value: datetime) -> datetime:
    """``value`` (timezone-aware) in UTC, the form events and read models store."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a naive datetime is not an instant")
    return value.astimezone(UTC)
