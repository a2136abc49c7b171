"""Constrained field types shared by commands and queries (validated on decode)."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "KindName",
    "MemoryId",
    "RelationName",
    "Seq",
    "ShortText",
    "TagName",
    "VersionId",
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
