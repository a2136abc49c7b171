"""Planner statistics of a growing read-model schema, refreshed by the projector itself.

Postgres caches a generic plan for a statement after a few runs, and the plan of every foreign
key check, and keeps it until the table's statistics change. In a fresh schema (a new install,
or the one ``mnemos replay`` rebuilds into) those plans are made while ``memories`` is empty or
tiny, where scanning the namespace is as cheap as the primary key. Measured here: each of the
four foreign key checks per new memory then walked every memory of the namespace, 0.27 ms each
on average over the first 3,000 memories and growing with the namespace, until autovacuum's
first ANALYZE, up to a minute later (an external Postgres may analyze later still). So the
projector analyzes the tables it writes as its checkpoint first passes a few sizes; the new
statistics invalidate the cached plans, and the replanned ones use the keys (0.01 ms per
check). Past the last size autovacuum's proportional rule keeps statistics current.
"""

from __future__ import annotations

from typing import Final

import psycopg

from libs.runtime.logging import get_logger

__all__ = ["ANALYZE_AT", "WRITTEN_TABLES", "refresh_statistics"]

log = get_logger(__name__)

ANALYZE_AT: Final = (500, 5_000, 50_000)
"""Checkpoint sequences after which the written tables are analyzed."""

WRITTEN_TABLES: Final = (
    "memories", "memory_versions", "memory_events", "memory_branches", "memory_links",
    "command_results", "embedding_cache", "lexical_docs", "lexical_df",
)
"""The tables projections write, resolved through the connection's search path (its schema)."""


async def refresh_statistics(conn: psycopg.AsyncConnection[dict[str, object]],
                             before: int, after: int) -> bool:
    """ANALYZE the written tables if the checkpoint moved past a size of :data:`ANALYZE_AT`.

    Runs outside any transaction (``conn`` is in autocommit). Returns whether it analyzed.
    """
    if not any(before < size <= after for size in ANALYZE_AT):
        return False
    # A role that may not analyze a table gets a server warning for it, not an error.
    await conn.execute("ANALYZE " + ", ".join(WRITTEN_TABLES))
    log.info("read_model_statistics_refreshed", checkpoint=after)
    return True
