"""Postgres adapter of the audit chain: the writer's lock and appends, and bounded readers.

Only the holder of the auditor's leadership lock (taken by :mod:`libs.consumer` on the very
connection that commits the rows, so losing the connection loses the lock and the commit
together) extends the chain. The table's primary key and its continuity trigger (see the
migration) refuse a fork even from a writer that bypassed the lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from libs.runtime.migrations import apply_migrations
from services.auditor.chain import GENESIS_LINK, ChainRow, Head, StoredRow
from services.auditor.checkpoint import Checkpoint

__all__ = [
    "MIGRATIONS_DIR",
    "ChainStore",
    "CheckpointRecord",
    "Conn",
    "audit_schema",
    "connect",
    "iter_rows",
    "migrate",
]

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_ZERO32: Final = bytes(32)
_COPY_ROWS: Final = (
    "COPY audit_chain (seq, event_id, event_hash, prev_link, link) FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES: Final = ("int8", "text", "bytea", "bytea", "bytea")

Conn = psycopg.AsyncConnection[dict[str, Any]]


def audit_schema(db_schema: str) -> str:
    """``<db_schema>_audit``: where the audit tables live.

    Beside the read models, not among them: ``mnemos replay`` renames the whole read-model
    schema away when it swaps in a rebuild, and the chain is evidence, not a projection that
    may be rebuilt. Its connections still see the read models (second on the search path),
    which verification compares with the stream.
    """
    return f"{db_schema}_audit"


def migrate(database_url: str, db_schema: str) -> list[int]:
    """Apply the auditor's migrations into its schema (blocking; run in a thread)."""
    with psycopg.connect(database_url) as conn:
        return apply_migrations(conn, "auditor", MIGRATIONS_DIR, audit_schema(db_schema))


async def connect(database_url: str, db_schema: str, autocommit: bool = False) -> Conn:
    """A dict-row connection resolving names in the audit schema, then the read models.

    Plain psycopg rather than ``libs.runtime.database``: the audit tables hold no vectors, so
    the auditor does not depend on pgvector being registered (or installed) first.
    """
    path = f"-c search_path={audit_schema(db_schema)},{db_schema},public"
    return await psycopg.AsyncConnection.connect(
        database_url, options=path, autocommit=autocommit, row_factory=dict_row)


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A signed checkpoint with the ids of the event that announces it."""

    checkpoint: Checkpoint
    event_id: str
    command_id: str
    published_seq: int | None = None


def _record(row: dict[str, Any]) -> CheckpointRecord:
    return CheckpointRecord(
        Checkpoint(seq=int(row["seq"]), link=bytes(row["link"]).hex(), at=str(row["at"]),
                   public_key=str(row["public_key"]), signature=str(row["signature"])),
        str(row["event_id"]), str(row["command_id"]),
        None if row["published_seq"] is None else int(row["published_seq"]),
    )


class ChainStore:
    """Queries and statements over one connection (not shared between tasks)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def ensure_genesis(self) -> None:
        """Write the genesis row and the head row once."""
        async with self.conn.transaction():
            await self.conn.execute(
                "INSERT INTO audit_chain (seq, event_id, event_hash, prev_link, link) "
                "VALUES (0, NULL, %s, %s, %s) ON CONFLICT (seq) DO NOTHING",
                (_ZERO32, _ZERO32, GENESIS_LINK),
            )
            await self.conn.execute(
                "INSERT INTO audit_head (seq, link) VALUES (0, %s) ON CONFLICT DO NOTHING",
                (GENESIS_LINK,),
            )

    async def tail(self) -> Head:
        """The last stored link (genesis if the chain is empty)."""
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT seq, link FROM audit_chain ORDER BY seq DESC LIMIT 1")
            row = await cur.fetchone()
        return Head(0, GENESIS_LINK) if row is None else Head(int(row["seq"]), bytes(row["link"]))

    async def recorded_head(self) -> Head | None:
        """The head the writer last committed, or None before the first start."""
        async with self.conn.transaction():
            cur = await self.conn.execute("SELECT seq, link FROM audit_head")
            row = await cur.fetchone()
        return None if row is None else Head(int(row["seq"]), bytes(row["link"]))

    async def append(self, rows: Sequence[ChainRow], head: Head,
                     checkpoint: CheckpointRecord | None) -> None:
        """Commit ``rows``, the new head and an optional checkpoint in one transaction."""
        async with self.conn.transaction():
            async with self.conn.cursor() as cur, cur.copy(_COPY_ROWS) as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    await copy.write_row(
                        (row.seq, row.event_id, row.event_hash, row.prev_link, row.link))
            await self.conn.execute(
                "UPDATE audit_head SET seq = %s, link = %s, updated_at = now()",
                (head.seq, head.link),
            )
            if checkpoint is not None:
                await self._insert_checkpoint(checkpoint)

    async def _insert_checkpoint(self, record: CheckpointRecord) -> None:
        cp = record.checkpoint
        await self.conn.execute(
            "INSERT INTO audit_checkpoints (seq, link, at, public_key, signature, event_id, "
            "command_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (cp.seq, bytes.fromhex(cp.link), cp.at, cp.public_key, cp.signature,
             record.event_id, record.command_id),
        )

    async def last_checkpoint(self) -> CheckpointRecord | None:
        """The newest signed checkpoint."""
        found = await self._checkpoints("ORDER BY seq DESC LIMIT 1")
        return found[0] if found else None

    async def unpublished_checkpoints(self) -> list[CheckpointRecord]:
        """Checkpoints committed but not yet confirmed in the stream (crash in between)."""
        return await self._checkpoints("WHERE published_seq IS NULL ORDER BY seq")

    async def checkpoint_covering(self, seq: int, latest: bool) -> CheckpointRecord | None:
        """The latest checkpoint, or the first one at or after ``seq``."""
        where = "ORDER BY seq DESC LIMIT 1" if latest else "WHERE seq >= %s ORDER BY seq LIMIT 1"
        found = await self._checkpoints(where, () if latest else (seq,))
        return found[0] if found and found[0].checkpoint.seq >= seq else None

    async def _checkpoints(self, clause: str, params: tuple[Any, ...] = ()
                           ) -> list[CheckpointRecord]:
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT seq, link, at, public_key, signature, event_id, command_id, "
                f"published_seq FROM audit_checkpoints {clause}", params)
            return [_record(row) for row in await cur.fetchall()]

    async def mark_published(self, seq: int, published_seq: int) -> None:
        """Record where the checkpoint's event landed in the stream."""
        async with self.conn.transaction():
            await self.conn.execute(
                "UPDATE audit_checkpoints SET published_seq = %s WHERE seq = %s",
                (published_seq, seq))

    async def record_incident(self, kind: str, seq: int | None, detail: str) -> None:
        """Keep something the writer noticed, for verification reports and operators."""
        async with self.conn.transaction():
            await self.conn.execute(
                "INSERT INTO audit_incidents (kind, seq, detail) VALUES (%s, %s, %s)",
                (kind, seq, detail))

    async def incidents(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent incidents, newest first."""
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT id, at, kind, seq, detail FROM audit_incidents ORDER BY id DESC "
                "LIMIT %s", (limit,))
            return list(await cur.fetchall())

    async def row(self, seq: int) -> StoredRow | None:
        """One stored link."""
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT seq, event_id, event_hash, link FROM audit_chain WHERE seq = %s", (seq,))
            row = await cur.fetchone()
        return None if row is None else _stored(row)

    async def seq_of_event(self, event_id: str) -> int | None:
        """The stream sequence at which ``event_id`` was chained."""
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT seq FROM audit_chain WHERE event_id = %s ORDER BY seq LIMIT 1",
                (event_id,))
            row = await cur.fetchone()
        return None if row is None else int(row["seq"])

    async def last_verified(self) -> tuple[int, bytes] | None:
        """``(to_seq, to_link)`` of the newest verification, if it succeeded.

        After a failed run there is no incremental start: the next run is full, so a break
        keeps being reported until it is resolved.
        """
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT ok, to_seq, to_link FROM audit_verifications ORDER BY id DESC LIMIT 1")
            row = await cur.fetchone()
        if row is None or not row["ok"] or row["to_link"] is None:
            return None
        return int(row["to_seq"]), bytes(row["to_link"])

    async def latest_verification(self) -> tuple[bool, float] | None:
        """``(ok, finished at as Unix time)`` of the newest verification, if any."""
        async with self.conn.transaction():
            cur = await self.conn.execute(
                "SELECT ok, extract(epoch FROM finished_at)::float8 AS at"
                " FROM audit_verifications ORDER BY id DESC LIMIT 1")
            row = await cur.fetchone()
        return None if row is None else (bool(row["ok"]), float(row["at"] or 0.0))

    async def record_verification(self, mode: str, started_at: object, from_seq: int,
                                  to_seq: int, to_link: bytes | None, ok: bool,
                                  report: dict[str, Any]) -> None:
        """Keep a verification run; a successful one is the next incremental start."""
        async with self.conn.transaction():
            await self.conn.execute(
                "INSERT INTO audit_verifications (mode, started_at, from_seq, to_seq, to_link, "
                "ok, report) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (mode, started_at, from_seq, to_seq, to_link, ok, Jsonb(report)))


def _stored(row: dict[str, Any]) -> StoredRow:
    return StoredRow(int(row["seq"]), row["event_id"], bytes(row["event_hash"]),
                     bytes(row["link"]))


async def iter_rows(conn: Conn, first: int, last: int | None, name: str = "audit_rows",
                    page: int = 2000) -> AsyncIterator[StoredRow]:
    """Stored links ``first..last`` in order through a server-side cursor (bounded memory).

    Must run inside a transaction of ``conn``.
    """
    bound = "" if last is None else " AND seq <= %(last)s"
    async with conn.cursor(name=name) as cur:
        cur.itersize = page
        await cur.execute(
            "SELECT seq, event_id, event_hash, link FROM audit_chain "
            f"WHERE seq >= %(first)s{bound} ORDER BY seq", {"first": first, "last": last})
        async for row in cur:
            yield _stored(row)
