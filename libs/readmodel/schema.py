"""The read-model schema: migrations, the embedding-dimension guard, advisory-lock keys."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import blake3
import psycopg
from psycopg import sql

from libs.events import InvalidInput
from libs.runtime.migrations import apply_migrations

__all__ = [
    "COMPONENT",
    "MIGRATIONS_DIR",
    "EmbeddingDimensionMismatch",
    "advisory_key",
    "prepare_schema",
]

COMPONENT: Final = "projector"
MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"


class EmbeddingDimensionMismatch(InvalidInput):
    """The read models were built for another embedding dimension than the configured model's."""

    code = "embedding_dimension_mismatch"


def advisory_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``purpose`` on ``schema``."""
    digest = blake3.blake3(f"mnemos:{purpose}:{schema}".encode()).digest(length=8)
    return int.from_bytes(digest, "big", signed=True)


def prepare_schema(database_url: str, schema: str, embedding_dim: int) -> None:
    """Apply pending migrations to ``schema`` and check its embedding dimension. Blocking.

    The dimension is fixed when the schema is created (``vector(N)`` columns); a different
    embedder later would write vectors the columns reject, so it is refused at start.
    """
    with psycopg.connect(database_url) as conn:
        apply_migrations(conn, COMPONENT, MIGRATIONS_DIR, schema, {"embedding_dim": embedding_dim})
        row = conn.execute(
            sql.SQL("SELECT value FROM {}.read_model_settings WHERE key = 'embedding_dim'").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    stored = int(row[0]) if row else None
    if stored != embedding_dim:
        raise EmbeddingDimensionMismatch(
            f"the read models in schema {schema!r} hold {stored}-dimensional embeddings but the "
            f"configured embedder produces {embedding_dim}; configure the original embedder, or "
            "rebuild the read models for the new one with `mnemos replay` into a fresh schema",
            schema=schema, stored=stored, configured=embedding_dim,
        )
