"""The gateway's Postgres adapter: a connection pool over the projector's read models, the
command-results lookup (idempotency beyond the duplicate window) and read-your-writes waits.

The projector owns the schema (it runs the migrations). The gateway does not wait for it to
start: commands only need the stream, so the pool is opened in the background once the tables
exist, and until then queries answer ``unavailable`` (503) and readiness reports not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from libs.events import CommandResult, DeadLettered, InvalidInput, Unavailable
from libs.runtime.config import Config
from libs.runtime.database import search_path_options
from libs.runtime.logging import get_logger

__all__ = ["CHECKPOINT_NAME", "Conn", "ReadModels"]

log = get_logger(__name__)

CHECKPOINT_NAME: Final = "read_models"
"""Row of ``projection_checkpoints`` the projector advances with every applied event."""

REQUIRED_TABLES: Final = ("memories", "command_results", "projection_checkpoints")
POLL_INTERVAL_S: Final = 0.02
SCHEMA_RETRY_S: Final = 0.25

Conn = psycopg.AsyncConnection[DictRow]


async def _configure(conn: Conn) -> None:
    await register_vector_async(conn)


class ReadModels:
    """Access to the read models; every method raises :class:`Unavailable` if Postgres is not."""

    def __init__(self, config: Config, pool_size: int = 8, acquire_timeout_s: float = 5.0,
                 stream_last_seq: Callable[[], Awaitable[int]] | None = None) -> None:
        if not config.database_url:
            raise ValueError("the gateway needs config.database_url")
        self._config = config
        self._url = config.database_url
        self._pool_size = pool_size
        self._acquire_timeout_s = acquire_timeout_s
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._projected = 0
        self._refresh_task: asyncio.Task[int] | None = None
        self._stream_last_seq = stream_last_seq

    @property
    def ready(self) -> bool:
        """Whether the pool is open (the projector's schema exists)."""
        return self._pool is not None

    async def _schema_exists(self) -> bool:
        async with await psycopg.AsyncConnection.connect(
            self._url, options=search_path_options(self._config.db_schema), autocommit=True
        ) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)",
                (self._config.db_schema, list(REQUIRED_TABLES)),
            )
            row = await cur.fetchone()
            return row is not None and row[0] == len(REQUIRED_TABLES)

    async def open_when_ready(self, stop: asyncio.Event) -> None:
        """Wait until the projector has created the schema, then open the pool.

        Retries until it succeeds or ``stop`` is set; a database that is down at start is waited
        for, not fatal.
        """
        waited = False
        while not stop.is_set():
            try:
                if await self._schema_exists():
                    self._pool = await self._open_pool()
                    log.info("read_models_ready", schema=self._config.db_schema)
                    return
                if not waited:
                    log.info("waiting_for_read_model_schema", schema=self._config.db_schema)
                    waited = True
            except (psycopg.Error, PoolTimeout) as exc:
                log.warning("database_unreachable", error=str(exc).strip()[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCHEMA_RETRY_S)

    async def _open_pool(self) -> AsyncConnectionPool[Conn]:
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._url, connection_class=Conn, open=False, min_size=1, max_size=self._pool_size,
            configure=_configure, name="gateway",
            # A connection that died while idle (Postgres restarted) is found and replaced
            # before it is handed out: one round trip per checkout.
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "options": search_path_options(self._config.db_schema),
                "autocommit": True, "row_factory": dict_row,
            },
        )
        try:
            await pool.open(wait=True, timeout=10.0)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_task.cancel()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection (autocommit; open ``conn.transaction()`` where needed)."""
        if self._pool is None:
            raise Unavailable("read models are not ready (waiting for the projector's schema)")
        try:
            async with self._pool.connection(timeout=self._acquire_timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            raise Unavailable("no database connection available", error=str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise Unavailable("database unreachable", error=str(exc).strip()[:200]) from exc

    async def ping(self) -> bool:
        """Whether a trivial query succeeds (readiness)."""
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
            return True
        except (Unavailable, psycopg.Error):
            return False

    async def command_result(self, ns: str, command_id: str
                             ) -> tuple[CommandResult, str | None] | None:
        """The stored first result of ``command_id`` in ``ns`` with its command's digest (None
        for results projected before digests existed), if the projector has one."""
        async with self.connection() as conn:
            cur = await conn.execute(
                "SELECT command_id, event_id, event_type, memory_id, version_id, seq,"
                " command_digest FROM command_results"
                " WHERE ns = %(ns)s AND command_id = %(command_id)s",
                {"ns": ns, "command_id": command_id},
            )
            row = await cur.fetchone()
        if row is None:
            return None
        seq = int(row["seq"])
        result = CommandResult(
            command_id=str(row["command_id"]), event_id=str(row["event_id"]),
            event_type=str(row["event_type"]), memory_id=str(row["memory_id"]),
            version_id=None if row["version_id"] is None else str(row["version_id"]),
            seq=seq, revision=seq, duplicate=True,
        )
        digest = row["command_digest"]
        return result, None if digest is None else str(digest)

    async def _read_checkpoint(self) -> int:
        async with self.connection() as conn:
            cur = await conn.execute(
                "SELECT last_seq FROM projection_checkpoints WHERE name = %(name)s",
                {"name": CHECKPOINT_NAME},
            )
            row = await cur.fetchone()
        seq = 0 if row is None else int(row["last_seq"])
        self._projected = max(self._projected, seq)
        return self._projected

    async def _raise_if_dead_lettered(self, seq: int) -> None:
        async with self.connection() as conn:
            cur = await conn.execute(
                "SELECT error FROM dead_letters WHERE consumer = 'projector' AND seq = %(seq)s",
                {"seq": seq})
            row = await cur.fetchone()
        if row is not None:
            raise DeadLettered(
                f"the event at seq {seq} was acknowledged but could not be projected "
                f"({str(row['error'])[:200]}); the read models do not reflect it",
                seq=seq)

    async def projected_seq(self) -> int:
        """The projection checkpoint; concurrent callers share one query in flight."""
        task = self._refresh_task
        if task is None or task.done():
            task = asyncio.ensure_future(self._read_checkpoint())
            self._refresh_task = task
        return await asyncio.shield(task)

    async def wait_for(self, after_seq: int | None) -> None:
        """Return once the read models include stream sequence ``after_seq`` (read-your-writes).

        Waits at most ``read_your_writes_timeout_s``, then raises :class:`Unavailable`; a
        sequence beyond the stream's end is :class:`InvalidInput` at once, and an event at
        ``after_seq`` that was dead-lettered is :class:`DeadLettered` (the read models will never
        reflect it, so answering would be stale data in disguise).
        """
        if not after_seq:
            return
        if after_seq > self._projected:
            await self._wait_projected(after_seq)
        await self._raise_if_dead_lettered(after_seq)

    async def _wait_projected(self, after_seq: int) -> None:
        if self._stream_last_seq is not None:
            last = await self._stream_last_seq()
            if after_seq > last:
                raise InvalidInput(
                    f"after_seq {after_seq} is beyond the stream's last sequence {last}",
                    field="after_seq", stream_last_seq=last,
                )
        timeout = self._config.read_your_writes_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            projected = await self.projected_seq()
            if projected >= after_seq:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"the read models have not reached seq {after_seq} within {timeout}s "
                    f"(projected up to {projected}); retry later",
                    after_seq=after_seq, projected_seq=projected, timeout_s=timeout,
                )
            await asyncio.sleep(min(POLL_INTERVAL_S, remaining))
