"""Content-addressed version ids (no wall clock): the same history gives the same ids anywhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import blake3
import msgspec

from libs.events.model import MetadataValue

__all__ = ["VERSION_ID_HEX_CHARS", "version_id"]

VERSION_ID_HEX_CHARS: Final = 32
"""128 bits of blake3: collision-safe for any realistic history, short enough to read."""

_DOMAIN: Final = b"mnemos.version-id.v1\x00"
_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def version_id(
    memory_id: str,
    content_hash: str,
    metadata: Mapping[str, MetadataValue],
    parents: Iterable[str],
) -> str:
    """The id of a version: blake3 over its memory, content hash, metadata and sorted parents.

    The memory id is part of the identity, so two memories that happen to hold equal text still
    have distinct version ids (a version belongs to exactly one DAG).
    """
    body = _ENCODER.encode(
        {
            "memory_id": memory_id,
            "content_hash": content_hash,
            "metadata": dict(metadata),
            "parents": sorted(parents),
        }
    )
    return blake3.blake3(_DOMAIN + body).hexdigest()[:VERSION_ID_HEX_CHARS]
