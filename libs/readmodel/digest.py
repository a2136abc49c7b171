"""A digest of the read models: equal for two databases projected from the same stream.

blake3 over a canonical dump (each row's text form, rows in primary-key order, timestamps in
UTC, hashed by the server in chunks) of every read-model table, every column included by
default so that a new column is covered without touching this file. Left out, each for a reason:

- ``memories.tsv``, ``lexical_docs.tsv``: generated from ``content`` by Postgres (the lexical
  tables themselves are included: their counts must replay identically).
- embedding floats: the vector of a text depends on the other texts of its embedding batch
  (padding changes the ONNX matmul shapes, so the last bits differ), so bitwise equality is not a
  property of the system. The digest keeps what determines them: ``embedding_model`` and the
  vector's dimension, next to the ``content_hash`` the cache is keyed by.
- ``projection_checkpoints.updated_at``, ``dead_letters.at``: wall-clock times of projecting.
- ``embedding_cache`` (a cache, not a read model) and ``schema_migrations`` (bookkeeping).
"""

from __future__ import annotations

from typing import Final

import blake3
import msgspec
import psycopg
from psycopg import sql

__all__ = ["DIGEST_TABLES", "read_model_digest", "row_counts"]

DIGEST_TABLES: Final[dict[str, tuple[str, ...]]] = {
    "read_model_settings": ("key",),
    "projection_checkpoints": ("name",),
    "memories": ("ns", "memory_id"),
    "memory_versions": ("ns", "memory_id", "version_id"),
    "memory_events": ("ns", "memory_id", "seq"),
    "memory_links": ("ns", "memory_id", "target_memory_id", "relation"),
    "memory_branches": ("ns", "memory_id", "branch"),
    "command_results": ("ns", "command_id"),
    "lexical_docs": ("ns", "memory_id"),
    "lexical_ns_stats": ("ns",),
    "lexical_df": ("ns", "lexeme"),
    "dead_letters": ("consumer", "seq"),
    "memory_compressions": ("ns", "memory_id", "receipt_id"),
    # the reasoning layer (migration 0009)
    "registry_models": ("key",),
    "registry_providers": ("provider",),
    "registry_rankings": ("source", "category"),
    "registry_consultations": ("ns", "consultation_id"),
    "registry_events": ("seq",),
}
"""Each table of the digest with its primary key (the dump order)."""

_EXCLUDED: Final = {
    "memories": {"tsv"},
    "lexical_docs": {"tsv"},
    "projection_checkpoints": {"updated_at"},
    "dead_letters": {"at"},
}
_INTEGER_KEYS: Final = {"seq"}
_VECTOR_COLUMNS: Final = {("memories", "embedding")}

_ENCODER: Final = msgspec.json.Encoder(order="sorted")

AnyConn = psycopg.AsyncConnection[dict[str, object]]


async def _columns(conn: AnyConn, table: str) -> list[str]:
    # The catalog itself: information_schema.columns costs ~0.1 s a call on a busy catalog.
    cur = await conn.execute(
        "SELECT attname AS column_name FROM pg_attribute"
        " WHERE attrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident(%s))"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,), prepare=False,
    )
    excluded = _EXCLUDED.get(table, set())
    return [str(row["column_name"]) for row in await cur.fetchall()
            if row["column_name"] not in excluded]


def _select_list(table: str, columns: list[str]) -> sql.Composable:
    parts: list[sql.Composable] = []
    for column in columns:
        if (table, column) in _VECTOR_COLUMNS:
            parts.append(sql.SQL("vector_dims({})").format(sql.Identifier(column)))
        else:
            parts.append(sql.Identifier(column))
    return sql.SQL(", ").join(parts)


def _order_by(key: tuple[str, ...]) -> sql.Composable:
    # Byte order for text keys: the same in every database whatever its default collation.
    return sql.SQL(", ").join(
        sql.Identifier(k) if k in _INTEGER_KEYS
        else sql.SQL('{} COLLATE "C"').format(sql.Identifier(k))
        for k in key
    )


_CHUNK_ROWS: Final = 4096
"""Rows hashed by the server per chunk; the client hashes the chunks' hashes in order."""


async def read_model_digest(conn: AnyConn) -> str:
    """Hex blake3 digest of the read models in the connection's schema (its search path).

    The server does the work: it writes each row as text (a record of its columns, in UTC),
    and hashes the rows of each chunk of :data:`_CHUNK_ROWS` in primary-key order with
    SHA-256; blake3 here chains the table headers and the chunk hashes. A digest costs one
    ordered scan per table, and no row crosses the connection. Runs in one repeatable-read
    snapshot so a projector committing meanwhile cannot tear it; ``conn`` must be in
    autocommit mode.
    """
    hasher = blake3.blake3()
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # The text forms of values, fixed whatever the server's defaults: UTC ISO timestamps,
        # floats in their shortest exact form, hex bytea.
        for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, YMD'",
                        "IntervalStyle = 'iso_8601'", "extra_float_digits = 1",
                        "bytea_output = 'hex'",
                        # the ordered chunks sort in memory, not in temporary files
                        "work_mem = '64MB'"):
            await conn.execute("SET LOCAL " + setting)
        for table, key in DIGEST_TABLES.items():
            columns = await _columns(conn, table)
            hasher.update(_ENCODER.encode({"table": table, "columns": columns}) + b"\n")
            query = sql.SQL(
                "SELECT sha256(convert_to(string_agg(line, E'\\n' ORDER BY ord), 'UTF8'))"
                " FROM (SELECT row_number() OVER (ORDER BY {key}) AS ord,"
                " ROW({columns})::text AS line FROM {table}) AS numbered"
                " GROUP BY (ord - 1) / {chunk} ORDER BY (ord - 1) / {chunk}"
            ).format(key=_order_by(key), columns=_select_list(table, columns),
                     table=sql.Identifier(table), chunk=sql.Literal(_CHUNK_ROWS))
            cur = await conn.execute(query, prepare=False)
            for row in await cur.fetchall():
                hasher.update(bytes(next(iter(row.values()))))  # type: ignore[call-overload]
    return hasher.hexdigest()


async def row_counts(conn: AnyConn) -> dict[str, int]:
    """Rows per read-model table in the connection's schema."""
    counts: dict[str, int] = {}
    for table in DIGEST_TABLES:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table)), prepare=False
        )
        row = await cur.fetchone()
        counts[table] = int(str(row["n"])) if row else 0
    return counts
