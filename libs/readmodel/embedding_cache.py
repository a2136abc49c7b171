"""Embeddings of contents, through the ``embedding_cache`` table keyed by (model, content hash).

A content is embedded at most once per model: a replay, a revert to older text or two memories
holding the same text all reuse the cached vector.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector import Vector
from prometheus_client import Counter

from libs.embeddings import Embedder
from libs.events import content_hash
from libs.readmodel.projections import Embedding

__all__ = ["EMBEDDINGS", "embed_contents"]

EMBEDDINGS: Final = Counter(
    "mnemos_projector_embeddings", "Contents embedded (miss) or found in the cache (hit).",
    ["result"],
)


def _as_array(value: object) -> npt.NDArray[np.float32]:
    """pgvector loads a ``Vector``; the projections write numpy arrays."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)


async def embed_contents(
    conn: psycopg.AsyncConnection[dict[str, object]], embedder: Embedder,
    contents: Iterable[str] | Mapping[str, str], *, as_text: bool = False,
) -> dict[str, Embedding]:
    """Embeddings of ``contents`` keyed by content hash: cached ones read, the rest computed.
    ``contents`` may already be a mapping of content hash to text (nothing is hashed again).
    ``as_text``: vectors in pgvector's text form, as Postgres prints them (a bulk rebuild
    passes them through to ``COPY`` without a float in Python).

    Misses are embedded in one call (off the event loop) and cached in their own short
    transaction, so the work survives even if the batch that needed it is rolled back.
    """
    by_hash = (dict(contents) if isinstance(contents, Mapping)
               else {content_hash(text): text for text in contents})
    if not by_hash:
        return {}
    model = embedder.model_id
    found: dict[str, Embedding]
    if as_text:
        cur = await conn.execute(
            "SELECT content_hash, embedding::text AS embedding FROM embedding_cache"
            " WHERE model = %s AND content_hash = ANY(%s)", (model, list(by_hash)))
        found = {str(row["content_hash"]): Embedding(model, str(row["embedding"]))
                 for row in await cur.fetchall()}
    else:
        # Binary results: a vector's text form costs a float parse per dimension in Python.
        cur = await conn.cursor(binary=True).execute(
            "SELECT content_hash, embedding FROM embedding_cache"
            " WHERE model = %s AND content_hash = ANY(%s)", (model, list(by_hash)))
        found = {str(row["content_hash"]): Embedding(model, _as_array(row["embedding"]))
                 for row in await cur.fetchall()}
    misses = [digest for digest in by_hash if digest not in found]
    EMBEDDINGS.labels("hit").inc(len(found))
    if misses:
        vectors = await asyncio.to_thread(embedder.embed, [by_hash[d] for d in misses])
        EMBEDDINGS.labels("miss").inc(len(misses))
        async with conn.transaction(), conn.cursor() as insert:
            await insert.executemany(
                "INSERT INTO embedding_cache (model, content_hash, embedding) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(model, digest, vector) for digest, vector in zip(misses, vectors, strict=True)],
            )
        for digest, vector in zip(misses, vectors, strict=True):
            found[digest] = Embedding(model, Vector(vector).to_text() if as_text else vector)
    return found
