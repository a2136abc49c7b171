"""The read-model schema: migrations, the embedding-dimension guard, advisory-lock keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from libs.consumer.leadership import advisory_key
from libs.events import InvalidInput
from libs.runtime.migrations import apply_migrations

__all__ = [
    "AS_OF_INFIX",
    "COMPONENT",
    "MIGRATIONS_DIR",
    "OLD_SCHEMA_INFIX",
    "EmbeddingDimensionMismatch",
    "advisory_key",
    "as_of_schemas",
    "copy_embedding_cache",
    "drop_schema",
    "old_schemas",
    "prepare_schema",
    "rename_schema",
]

COMPONENT: Final = "projector"
MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"


class EmbeddingDimensionMismatch(InvalidInput):
    """The read models were built for another embedding dimension than the configured model's."""

    code = "embedding_dimension_mismatch"


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


async def drop_schema(conn: Any, schema: str) -> None:
    """Drop ``schema`` and everything in it (a rebuild's leftovers), if it exists."""
    await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


OLD_SCHEMA_INFIX: Final = "_old_"
"""A swapped-out schema is ``<live>_old_<YYYYmmddHHMMSS>`` (UTC)."""


async def old_schemas(conn: Any, live: str) -> list[str]:
    """The schemas a replay swapped out of ``live``, oldest first."""
    return await _siblings(conn, live, OLD_SCHEMA_INFIX, "[0-9]{14}")


AS_OF_INFIX: Final = "_asof_"
"""A rebuild of the state as of stream sequence N is ``<live>_asof_<N>``."""


async def as_of_schemas(conn: Any, live: str) -> list[str]:
    """The as-of rebuilds of ``live`` (``mnemos replay --until-seq/--as-of``)."""
    return await _siblings(conn, live, AS_OF_INFIX, "[0-9]+")


async def _siblings(conn: Any, live: str, infix: str, suffix: str) -> list[str]:
    """Schemas named ``<live><infix><suffix>`` (a regular expression), in name order."""
    cur = await conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname ~ %s ORDER BY nspname",
        (f"^{re.escape(live)}{re.escape(infix)}{suffix}$",), prepare=False)
    return [str(row[0]) for row in await cur.fetchall()]


async def rename_schema(conn: Any, old: str, new: str) -> None:
    """Rename a read-model schema (inside the caller's transaction: swaps are atomic)."""
    await conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
        sql.Identifier(old), sql.Identifier(new)))


async def copy_embedding_cache(conn: Any, source: str, target: str) -> None:
    """Seed ``target``'s embedding cache with ``source``'s, so a rebuild embeds nothing twice."""
    await conn.execute(sql.SQL(
        "INSERT INTO {}.embedding_cache SELECT * FROM {}.embedding_cache ON CONFLICT DO NOTHING"
    ).format(sql.Identifier(target), sql.Identifier(source)))
