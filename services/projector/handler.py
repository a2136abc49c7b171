"""The projector on the shared consumer runtime: its handler and its wiring.

The runtime (:mod:`libs.consumer`) leads, pulls, acknowledges and recovers; this handler
decodes each batch once, embeds it (ahead of time, on its own connection, while an earlier
batch is written) and applies it with its checkpoint in one transaction (:mod:`.batch`).

Only one instance projects a schema at a time, because projections must apply events in stream
order. ``fenced`` makes batches hold the replay swap fence (the live schema); a replay's own
rebuild runs unfenced and without republishing dead letters.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg.conninfo import make_conninfo

from libs.consumer import (
    ConsumerRuntime,
    ConsumerSettings,
    DeadLetter,
    Delivery,
    Takeover,
    advisory_key,
    publish_dead_letters,
)
from libs.consumer.stream import reread_if_still_served
from libs.embeddings import Embedder
from libs.readmodel.embedding_cache import embed_contents
from libs.readmodel.projections import Embedding
from libs.readmodel.statistics import refresh_statistics
from libs.runtime.database import connect_async
from libs.runtime.logging import get_logger
from services.projector.batch import BatchApplier, BatchPlan, Conn
from services.projector.decoding import Decoded, decode_batch, texts_by_digest

__all__ = ["CONSUMER_NAME", "ProjectionHandler", "ProjectorSettings", "projector_runtime"]

log = get_logger(__name__)

DECODE_CHUNK: Final = 256
"""Deliveries decoded between two yields to the event loop (about 5 ms of work)."""

CONSUMER_NAME: Final = "projector"
"""Durable consumer (and leadership role) of the live projector."""


@dataclass(frozen=True)
class ProjectorSettings:
    """How one projector instance runs (see the module docstring for ``fenced``)."""

    database_url: str
    schema: str
    consumer: str = CONSUMER_NAME
    publish_dead_letters: bool = True
    fenced: bool = True
    batch_size: int = 256
    embed_ahead: int = 2
    max_attempts: int = 3
    copy_min_run: int | None = 64
    """Runs of at least this many events insert their rows with ``COPY`` (a backlog, a
    rebuild); shorter ones are pipelined statements (lower latency for a trickle)."""
    consumer_options: dict[str, Any] = field(default_factory=dict)
    """Further :class:`ConsumerSettings` fields (tests shorten waits)."""
    synchronous_commit: bool = True
    """False for a rebuild: its batches commit without waiting for the WAL flush. A rebuild
    nobody reads yet loses nothing by it in a crash (an unfinished rebuild is redone), and the
    swap that makes it live commits synchronously, which flushes the WAL of every batch before
    it."""

    def url(self) -> str:
        """The database URL naming this process (operators see who holds the lock)."""
        return make_conninfo(self.database_url,
                             application_name=f"mnemos-{self.consumer}-{os.getpid()}")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch decoded once, and the embeddings found or computed for it so far."""

    decoded: list[Decoded]
    embeddings: dict[str, Embedding]
    plan: BatchPlan | None = None
    """Its statements, planned while the batch before it was written (every vector found)."""


class ProjectionHandler:
    """Decode, embed, apply; see :class:`libs.consumer.ConsumerHandler`."""

    def __init__(self, settings: ProjectorSettings, js: Any, embedder: Embedder) -> None:
        self.settings = settings
        self.js = js
        self.embedder = embedder
        self._applier: BatchApplier | None = None
        self._checkpoint = 0
        self._idle: list[Conn] = []
        self._opened: list[Conn] = []

    async def start(self, conn: Conn, takeover: Takeover) -> int:
        s = self.settings
        fence = advisory_key("swap", s.schema) if s.fenced else None
        if not s.synchronous_commit:
            await conn.execute("SET synchronous_commit = off")
        self._applier = BatchApplier(conn, self.embedder, schema=s.schema, fence_key=fence,
                                     max_attempts=s.max_attempts,
                                     copy_min_run=s.copy_min_run)
        self._checkpoint = await self._applier.read_checkpoint()
        # Opened here, not on demand in prepare(): a prepare cancelled mid-connect would leave
        # a server session behind until garbage collection.
        for _ in range(s.embed_ahead + 1 if s.embed_ahead > 0 else 0):
            conn_ahead = await connect_async(s.url(), s.schema, autocommit=True)
            self._opened.append(conn_ahead)
            self._idle.append(conn_ahead)
        return self._checkpoint

    async def prepare(self, deliveries: Sequence[Delivery]) -> Prepared:
        decoded: list[Decoded] = []
        for start in range(0, len(deliveries), DECODE_CHUNK):
            # Decoded in chunks, yielding between them: a batch being written meanwhile on
            # this event loop keeps sending its rows.
            decoded += decode_batch(deliveries[start:start + DECODE_CHUNK])
            await asyncio.sleep(0)
        if self.settings.embed_ahead <= 0:
            return Prepared(decoded, {})  # a bounded run embeds while applying, on its one conn
        wanted = texts_by_digest(decoded)
        embeddings: dict[str, Embedding] = {}
        if wanted:
            conn = self._idle.pop()  # the runtime prepares at most ahead + 1 batches at once
            try:
                embeddings = await embed_contents(conn, self.embedder, wanted)
            finally:
                self._idle.append(conn)
        plan = (await self._applier.plan_ahead(decoded, embeddings)
                if decoded and self._applier is not None else None)
        return Prepared(decoded, embeddings, plan)

    async def apply(self, conn: Conn, deliveries: Sequence[Delivery], prepared: Prepared) -> int:
        assert self._applier is not None
        publish = self._publish if self.settings.publish_dead_letters else None
        outcome = await self._applier.apply(prepared.decoded, prepared.embeddings, publish,
                                            prepared.plan)
        before, self._checkpoint = self._checkpoint, outcome.last_seq
        await refresh_statistics(conn, before, outcome.last_seq)
        return outcome.last_seq

    async def _publish(self, letters: Sequence[DeadLetter]) -> None:
        await publish_dead_letters(self.js, self.settings.consumer, letters)

    async def idle(self, conn: Conn) -> None:
        return None

    async def on_gap(self, conn: Conn, expected: int, got: int) -> None:
        # A message the stream still serves is read again; one it no longer serves cannot be
        # projected (the auditor reports holes).
        await reread_if_still_served(self.js, expected, got)
        log.warning("projector_stream_gap", expected=expected, got=got)

    async def close(self) -> None:
        for conn in self._opened:
            await conn.close()
        self._opened.clear()
        self._idle.clear()
        self._applier = None


def projector_runtime(settings: ProjectorSettings, nc: Any, embedder: Embedder,
                      on_checkpoint: Callable[[int], None] | None = None
                      ) -> ConsumerRuntime[Prepared]:
    """The projector as a consumer-runtime instance."""

    def connect() -> Awaitable[Conn]:
        return connect_async(settings.url(), settings.schema, autocommit=True)

    consumer = ConsumerSettings(
        name=settings.consumer, role="projector", schema=settings.schema, connect=connect,
        batch_size=settings.batch_size, ahead=settings.embed_ahead,
        **settings.consumer_options,
    )
    handler = ProjectionHandler(settings, nc.jetstream(), embedder)
    return ConsumerRuntime(consumer, handler, nc, on_checkpoint=on_checkpoint)
