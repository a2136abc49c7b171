"""The projection's bookkeeping tables: its checkpoint, the ids it has projected, the dead
letters it gave up on (and the memories they leave diverged)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from psycopg import sql

from libs.consumer.dead_letters import DeadLetter, memory_of_subject

__all__ = [
    "CHECKPOINT_NAME",
    "checkpoint_table_oid",
    "checkpoints_now",
    "live_checkpoint",
    "projected_event_ids",
    "read_checkpoint",
    "record_batch_end",
    "table_exists",
]

CHECKPOINT_NAME: Final = "read_models"
"""Row of ``projection_checkpoints`` holding the last stream sequence applied."""

Conn = Any


async def read_checkpoint(conn: Conn) -> int:
    """The last committed stream sequence of the read models (0 before the first event)."""
    cur = await conn.execute(
        "SELECT last_seq FROM projection_checkpoints WHERE name = %s", (CHECKPOINT_NAME,))
    row = await cur.fetchone()
    return int(row["last_seq"]) if row else 0


async def checkpoint_table_oid(conn: Conn) -> int:
    """The oid of the checkpoint table the search path resolves (it changes when a replay
    swaps schemas)."""
    cur = await conn.execute("SELECT to_regclass('projection_checkpoints')::oid AS oid",
                             prepare=False)
    row = await cur.fetchone()
    return int(row["oid"]) if row and row["oid"] is not None else 0


async def projected_event_ids(conn: Conn, event_ids: list[str]) -> set[str]:
    """Which of ``event_ids`` are projected already (the same event appended twice)."""
    # One parameter read twice: the id list is dumped once.
    cur = await conn.execute("SELECT event_id FROM memory_events WHERE event_id = ANY(%(ids)s)"
                             " UNION ALL SELECT event_id FROM registry_events"
                             " WHERE event_id = ANY(%(ids)s)", {"ids": event_ids})
    return {str(row["event_id"]) for row in await cur.fetchall()}


async def record_batch_end(conn: Conn, last_seq: int, letters: Sequence[DeadLetter]) -> None:
    """Inside the batch's transaction: its dead letters (and the memories they leave diverged)
    and the new checkpoint."""
    async with conn.cursor() as cur:
        if letters:
            await cur.executemany(
                "INSERT INTO dead_letters (consumer, seq, event_id, subject, error, attempts,"
                " raw) VALUES ('projector', %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(d.seq, d.event_id, d.subject, d.error, d.attempts, d.raw) for d in letters],
            )
            marks = [(d.seq, *target) for d in letters
                     if (target := memory_of_subject(d.subject)) is not None]
            if marks:
                await cur.executemany(
                    "UPDATE memories SET diverged_seq = least(coalesce(diverged_seq, %s), %s)"
                    " WHERE ns = %s AND memory_id = %s",
                    [(seq, seq, ns, memory_id) for seq, ns, memory_id in marks],
                )
        await cur.execute(
            "INSERT INTO projection_checkpoints (name, last_seq) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET last_seq = EXCLUDED.last_seq, updated_at = now()",
            (CHECKPOINT_NAME, last_seq),
        )


async def table_exists(conn: Conn, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{table}",),
                             prepare=False)
    row = await cur.fetchone()
    return bool(row and row[0])


async def live_checkpoint(conn: Conn, schema: str) -> int | None:
    """The checkpoint of the read models in ``schema`` (None: the schema has none)."""
    if not await table_exists(conn, schema, "projection_checkpoints"):
        return None
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(max(last_seq), 0) FROM {}.projection_checkpoints"
                " WHERE name = %s").format(sql.Identifier(schema)),
        (CHECKPOINT_NAME,), prepare=False,
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def checkpoints_now(conn: Any) -> dict[str, int]:
    """Every projection checkpoint by name (a blocking connection, for operator tools)."""
    rows = conn.execute("SELECT name, last_seq FROM projection_checkpoints").fetchall()
    return {str(name): int(seq) for name, seq in rows}
