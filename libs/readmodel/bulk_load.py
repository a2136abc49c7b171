"""Loading a fresh read-model schema in bulk (``mnemos replay``): secondary structures last.

A projection written one event at a time into a full schema pays, per memory, for its HNSW
graph insert, a GIN insert per lexeme and the lexical statistics trigger's upsert of every
lexeme's document frequency. A rebuild writes into an empty schema nobody reads yet, so those
structures can be built once over the loaded rows instead, which is what Postgres is fast at:

- the non-unique indexes of the memory tables (search indexes: HNSW, GIN, the filters) are
  dropped before the load and created again after it from their own saved definitions. No
  projection reads them (projections find rows by primary key; unique indexes stay, since
  ``ON CONFLICT`` and duplicate detection need them);
- autovacuum is off for the schema's tables during the load: on a freshly filled table it
  would analyze and vacuum again and again, competing for the cores the load uses, and its
  locks would hold up the index builds (an autovacuum in the way is only cancelled after
  ``deadlock_timeout``). The finish analyzes every table once and turns it back on;
- the lexical statistics trigger is disabled during the load, and the three lexical tables are
  then counted from the loaded memories in three set-wise statements, the same recount the
  migrations use, which equals the trigger's incremental result row for row (the replay's digest
  check compares them with the live schema's).

The finish is a set of independent steps, each about one server core (pgvector builds the HNSW
graph with parallel workers of its own), so :func:`finish_bulk_load` shares them out over
several connections, the graph first; the lexical tables' indexes follow their recount, and the
trigger is enabled last, since that waits for every index build on ``memories``.

What is deferred is recorded in the schema itself (``bulk_load_deferred``), so a rebuild that
is interrupted can never be mistaken for a complete one: :func:`finish_bulk_load` is what makes
the schema whole, and the replay drops an unfinished rebuild before starting again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from libs.readmodel.statistics import WRITTEN_TABLES
from libs.runtime.logging import get_logger

__all__ = ["BULK_TABLES", "LEXICAL_TRIGGER", "DeferredStructures", "finish_bulk_load",
           "finish_tasks", "recount_lexical_statistics", "start_bulk_load"]

log = get_logger(__name__)

BULK_TABLES: Final = ("memories", "memory_versions", "memory_events", "memory_branches",
                      "memory_links", "memory_compressions", "lexical_docs", "lexical_df")
"""Tables whose non-unique indexes are built after a bulk load (no projection reads them)."""

AUTOVACUUM: Final = "autovacuum"
"""The record in ``bulk_load_deferred`` saying autovacuum is off for the schema's tables."""

LEXICAL_TRIGGER: Final = "memories_lexical_stats"
"""The row trigger keeping the lexical statistics (migration 0002), off during a bulk load."""

_RECOUNT: Final = (
    "TRUNCATE lexical_docs, lexical_ns_stats, lexical_df",
    "INSERT INTO lexical_docs (ns, memory_id, doc_len, tsv)"
    " SELECT ns, memory_id, length(tsv), tsv FROM memories WHERE forgotten_at IS NULL",
    "INSERT INTO lexical_ns_stats (ns, doc_count, total_len)"
    " SELECT ns, count(*), sum(doc_len) FROM lexical_docs GROUP BY ns",
    "INSERT INTO lexical_df (ns, lexeme, df)"
    " SELECT m.ns, l.lexeme, count(*) FROM memories m"
    " CROSS JOIN LATERAL unnest(tsvector_to_array(m.tsv)) AS l(lexeme)"
    " WHERE m.forgotten_at IS NULL GROUP BY m.ns, l.lexeme",
)

AnyConn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class DeferredStructures:
    """What :func:`start_bulk_load` took away from a schema: index names and definitions."""

    schema: str
    indexes: tuple[tuple[str, str], ...]
    tables: tuple[str, ...] = ()
    """The schema's tables, autovacuum off until the finish."""


async def start_bulk_load(conn: AnyConn, schema: str) -> DeferredStructures:
    """Drop the deferred indexes of ``schema`` and disable its lexical trigger, recording both
    in ``bulk_load_deferred``. ``schema`` must be a fresh rebuild nobody reads."""
    cur = await conn.execute(
        "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = %s AND t.relname = ANY(%s) AND NOT i.indisunique"
        " AND NOT i.indisprimary ORDER BY c.relname",
        (schema, list(BULK_TABLES)), prepare=False)
    indexes = tuple((str(r[0]), str(r[1])) for r in await cur.fetchall())
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname", (schema,),
        prepare=False)
    tables = tuple(str(r[0]) for r in await cur.fetchall())
    async with conn.transaction():
        await conn.execute(sql.SQL(
            "CREATE TABLE {}.bulk_load_deferred (name text PRIMARY KEY, definition text NOT NULL)"
        ).format(sql.Identifier(schema)))
        async with conn.cursor() as insert:
            await insert.executemany(
                sql.SQL("INSERT INTO {}.bulk_load_deferred (name, definition) VALUES (%s, %s)")
                .format(sql.Identifier(schema)),
                [*indexes, (LEXICAL_TRIGGER, "trigger"), (AUTOVACUUM, "off")])
        for table in tables:
            await conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)")
                               .format(sql.Identifier(schema, table)))
        for name, _ in indexes:
            await conn.execute(sql.SQL("DROP INDEX {}.{}").format(
                sql.Identifier(schema), sql.Identifier(name)))
        await conn.execute(sql.SQL("ALTER TABLE {}.memories DISABLE TRIGGER {}").format(
            sql.Identifier(schema), sql.Identifier(LEXICAL_TRIGGER)))
    log.info("bulk_load_started", schema=schema, deferred_indexes=len(indexes))
    return DeferredStructures(schema, indexes, tables)


async def recount_lexical_statistics(conn: AnyConn) -> None:
    """Count the lexical tables from the memories of the connection's schema (search path),
    inside the caller's transaction."""
    for statement in _RECOUNT:
        await conn.execute(statement, prepare=False)


def finish_tasks(deferred: DeferredStructures) -> list[list[tuple[str, str]]]:
    """The finish as independent task lists, longest first: each HNSW index alone, the
    lexical recount followed by the lexical tables' indexes (built on the counted rows, and never
    waiting on the recount's locks), the other indexes one by one."""
    lexical = [(n, d) for n, d in deferred.indexes if _table_of(d).startswith("lexical_")]
    graphs = [[(n, d)] for n, d in deferred.indexes if " USING hnsw " in d]
    others = [[(n, d)] for n, d in deferred.indexes
              if (n, d) not in lexical and " USING hnsw " not in d]
    return [*graphs, [("lexical statistics", ""), *lexical], *others]


def _table_of(definition: str) -> str:
    # pg_get_indexdef: "CREATE INDEX name ON schema.table USING method (...)"
    return definition.split(" ON ", 1)[1].split(" USING ", 1)[0].rsplit(".", 1)[-1].strip('"')


async def finish_bulk_load(connections: Sequence[AnyConn], deferred: DeferredStructures
                           ) -> dict[str, float]:
    """Make a bulk-loaded schema whole: lexical statistics counted, trigger on, every deferred
    index built, statistics analyzed. Returns the seconds each step took (for progress lines).

    The steps are independent of each other and mostly one server core each, so they are shared
    out over ``connections`` (one per core the server may use), longest first; each connection
    must be in autocommit mode with ``deferred.schema`` first on its search path.
    """
    if not connections:
        raise ValueError("finish_bulk_load needs at least one connection")
    schema = sql.Identifier(deferred.schema)
    seconds: dict[str, float] = {}
    queue: asyncio.Queue[list[tuple[str, str]]] = asyncio.Queue()
    for task in finish_tasks(deferred):
        queue.put_nowait(task)

    async def work(conn: AnyConn) -> None:
        while not queue.empty():
            for name, definition in queue.get_nowait():
                started = time.monotonic()
                if definition:
                    await conn.execute(definition, prepare=False)  # schema-qualified
                    log.info("bulk_load_index_built", schema=deferred.schema, index=name,
                             seconds=round(time.monotonic() - started, 2))
                else:
                    async with conn.transaction():
                        await recount_lexical_statistics(conn)
                seconds[name] = time.monotonic() - started

    await asyncio.gather(*(work(conn) for conn in connections))
    started = time.monotonic()
    tables = iter(WRITTEN_TABLES)

    async def analyze(conn: AnyConn) -> None:
        for table in tables:
            await conn.execute(sql.SQL("ANALYZE {}").format(
                sql.Identifier(deferred.schema, table)))

    await asyncio.gather(*(analyze(conn) for conn in connections))
    seconds["analyze"] = time.monotonic() - started
    conn = connections[0]
    async with conn.transaction():
        # Last, once nothing else runs: enabling the trigger waits for every index build on
        # memories, and an autovacuum started earlier would hold up the builds and ANALYZE.
        await conn.execute(sql.SQL("ALTER TABLE {}.memories ENABLE TRIGGER {}")
                           .format(schema, sql.Identifier(LEXICAL_TRIGGER)))
        for table in deferred.tables:
            await conn.execute(sql.SQL("ALTER TABLE {} RESET (autovacuum_enabled)")
                               .format(sql.Identifier(deferred.schema, table)))
        await conn.execute(sql.SQL("DROP TABLE {}.bulk_load_deferred").format(schema))
    return seconds
