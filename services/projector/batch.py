"""Applying one batch of stream messages to the read models, in one transaction.

The batch's events, its dead letters and the checkpoint (last stream sequence of the batch) are
committed together, so after a crash a message is either fully applied and checkpointed or not at
all; redelivered messages at or below the checkpoint are skipped.

Poison (an event that cannot be projected, whatever the retries): a batch first runs without
savepoints; if an event fails deterministically, the batch is rolled back and redone with one
savepoint per event, the failing event retried a bounded number of times and then recorded as a
dead letter while the rest of the batch commits. Transient failures (connection lost) propagate:
nothing is committed or acknowledged, and the caller reconnects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import nats.errors
import psycopg

from libs.embeddings import Embedder
from libs.events import Event, MnemosError, Unavailable, content_hash, decode_event
from libs.readmodel.embedding_cache import embed_contents
from libs.readmodel.projections import (
    Embedding,
    InvariantViolation,
    Statement,
    check_subject,
    content_of,
    event_type,
    is_projected,
    project,
)
from libs.runtime.logging import get_logger
from services.projector.deliveries import DeadLetter, Delivery, dead_letter, memory_of_subject
from services.projector.metrics import DEAD_LETTERED, DUPLICATES_SKIPPED, EVENTS_PROJECTED
from services.projector.runs import Planned, independent_runs

__all__ = [
    "CHECKPOINT_NAME",
    "BatchApplier",
    "BatchOutcome",
    "SchemaSwapped",
    "embed_ahead",
    "is_poison",
    "is_transient",
]

log = get_logger(__name__)

CHECKPOINT_NAME: Final = "read_models"
"""Row of ``projection_checkpoints`` holding the last stream sequence applied."""

Conn = psycopg.AsyncConnection[dict[str, object]]


class SchemaSwapped(Unavailable):
    """``mnemos replay`` swapped the read-model schema under this connection: reconnect."""


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did: ``skipped`` were at or below the checkpoint (redeliveries),
    ``passed_over`` are valid events the read models do not project (other aggregates)."""

    last_seq: int
    skipped: int = 0
    passed_over: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied_by_type: Counter[str] = field(default_factory=Counter)

    @property
    def applied(self) -> int:
        """Events applied to the read models."""
        return sum(self.applied_by_type.values())


def is_poison(exc: BaseException) -> bool:
    """A deterministic failure of one event: retrying the same bytes cannot succeed."""
    if isinstance(exc, Unavailable):
        return False
    return isinstance(exc, MnemosError | psycopg.DataError | psycopg.IntegrityError)


def is_transient(exc: BaseException) -> bool:
    """A failure of the surroundings (connection lost, timeout): retry the batch, ack nothing."""
    return isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError | Unavailable | nats.errors.Error
        | TimeoutError | ConnectionError,
    )


PublishDeadLetters = Callable[[Sequence[DeadLetter]], Awaitable[None]]


class BatchApplier:
    """Applies batches to the read models of one schema over one connection.

    ``fence_key`` (live projector only) is the advisory key ``mnemos replay`` takes exclusively
    to swap schemas: every batch holds it shared, and checks that the checkpoint table is still
    the one it started with, so no batch ever straddles or follows a swap unnoticed.
    """

    def __init__(
        self, conn: Conn, embedder: Embedder, *, schema: str, notify_channel: str | None,
        fence_key: int | None, max_attempts: int = 3,
    ) -> None:
        self.conn = conn
        self.embedder = embedder
        self.schema = schema
        self.notify_channel = notify_channel
        self.fence_key = fence_key
        self.max_attempts = max_attempts
        self._table_oid: int | None = None

    async def read_checkpoint(self) -> int:
        """The last committed stream sequence (0 before the first event)."""
        cur = await self.conn.execute(
            "SELECT last_seq FROM projection_checkpoints WHERE name = %s", (CHECKPOINT_NAME,)
        )
        row = await cur.fetchone()
        self._table_oid = await self._checkpoint_table_oid()
        return cast(int, row["last_seq"]) if row else 0

    async def _checkpoint_table_oid(self) -> int:
        cur = await self.conn.execute(
            "SELECT to_regclass('projection_checkpoints')::oid AS oid", prepare=False
        )
        row = await cur.fetchone()
        return cast(int, row["oid"]) if row and row["oid"] is not None else 0

    async def apply(
        self, deliveries: Sequence[Delivery], checkpoint: int,
        publish_dead_letters: PublishDeadLetters | None = None,
        embedded_ahead: dict[str, Embedding] | None = None,
    ) -> BatchOutcome:
        """Apply the deliveries above ``checkpoint`` and commit them with the new checkpoint.

        ``publish_dead_letters`` runs inside the transaction, just before the commit, so a dead
        letter is published before it is checkpointed (publishing is idempotent by message id).
        ``embedded_ahead`` holds embeddings already computed for these deliveries (see
        :func:`embed_ahead`); anything missing from it is embedded here.
        """
        fresh = [d for d in deliveries if d.seq > checkpoint]
        if not fresh:
            return BatchOutcome(last_seq=checkpoint, skipped=len(deliveries))
        decoded = [_decode(d) for d in fresh]
        texts = _texts_to_embed(decoded)
        ready = embedded_ahead or {}
        embeddings = dict(ready)
        missing = [t for t in texts if content_hash(t) not in ready]
        embeddings.update(await embed_contents(self.conn, self.embedder, missing))
        try:
            # Fast path: no savepoints. Poison is rare; when it shows up the batch is rolled
            # back and redone carefully, one savepoint (and bounded retries) per event.
            outcome = await self._apply_batch(decoded, embeddings, publish_dead_letters,
                                              careful=False)
        except _PoisonInBatch:
            outcome = await self._apply_batch(decoded, embeddings, publish_dead_letters,
                                              careful=True)
        outcome.skipped = len(deliveries) - len(fresh)
        self._record(outcome)
        return outcome

    async def _apply_batch(
        self, decoded: list[_Decoded], embeddings: dict[str, Embedding],
        publish_dead_letters: PublishDeadLetters | None, careful: bool,
    ) -> BatchOutcome:
        outcome = BatchOutcome(last_seq=max(item.delivery.seq for item in decoded))
        async with self.conn.transaction():
            await self._fence()
            seen = await self._already_projected(
                [i.event.id for i in decoded if i.event and is_projected(i.event)])
            if careful:
                for item in decoded:
                    await self._apply_one(item, seen, embeddings, outcome)
            else:
                await self._apply_pipelined(decoded, seen, embeddings, outcome)
            await self._finish(outcome)
            if outcome.dead_letters and publish_dead_letters is not None:
                await publish_dead_letters(outcome.dead_letters)
        return outcome

    def _record(self, outcome: BatchOutcome) -> None:
        """Logs and metrics, once per committed batch (never for a rolled-back attempt)."""
        for name, count in outcome.applied_by_type.items():
            EVENTS_PROJECTED.labels(self.schema, name).inc(count)
        if outcome.duplicates:
            log.warning("duplicate_events_skipped", count=outcome.duplicates)
            DUPLICATES_SKIPPED.labels(self.schema).inc(outcome.duplicates)
        for letter in outcome.dead_letters:
            log.error("event_dead_lettered", seq=letter.seq, subject=letter.subject,
                      error=letter.error, attempts=letter.attempts)
            DEAD_LETTERED.labels(self.schema).inc()

    async def _fence(self) -> None:
        if self.fence_key is None:
            return
        await self.conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self.fence_key,))
        if await self._checkpoint_table_oid() != self._table_oid:
            raise SchemaSwapped(f"read-model schema {self.schema} was swapped by a replay")

    async def _already_projected(self, event_ids: list[str]) -> set[str]:
        cur = await self.conn.execute(
            "SELECT event_id FROM memory_events WHERE event_id = ANY(%s)", (event_ids,)
        )
        return {str(row["event_id"]) for row in await cur.fetchall()}

    def _plan_one(
        self, item: _Decoded, seen: set[str], embeddings: dict[str, Embedding],
        outcome: BatchOutcome,
    ) -> Planned | None:
        """The statements applying one event, or None when it is not applied (recorded in
        ``outcome`` as a dead letter, a duplicate or passed over)."""
        delivery, event = item.delivery, item.event
        if item.error is not None or event is None:
            # Checks of immutable bytes, without the database: retrying cannot help.
            outcome.dead_letters.append(dead_letter(delivery, event, item.error, attempts=1))
            return None
        if not is_projected(event):
            outcome.passed_over += 1
            return None
        if event.id in seen:
            # The same event appended twice (beyond the duplicate window): already applied.
            outcome.duplicates += 1
            return None
        text = content_of(event)
        embedding = embeddings.get(content_hash(text)) if text is not None else None
        try:
            statements = project(event, delivery.seq, embedding)
        except MnemosError as exc:
            outcome.dead_letters.append(dead_letter(delivery, event, exc, attempts=1))
            return None
        seen.add(event.id)
        return Planned(event.id, event_type(event), event.aggregate_id, statements)

    async def _apply_one(
        self, item: _Decoded, seen: set[str], embeddings: dict[str, Embedding],
        outcome: BatchOutcome,
    ) -> None:
        """The careful path: one event in a savepoint, retried, dead-lettered if it fails."""
        planned = self._plan_one(item, seen, embeddings, outcome)
        if planned is None:
            return
        error = await self._execute_with_retries(item.delivery.seq, planned.statements)
        if error is not None:
            seen.discard(planned.event_id)
            outcome.dead_letters.append(
                dead_letter(item.delivery, item.event, error, attempts=self.max_attempts))
            return
        outcome.applied_by_type[planned.event_type] += 1

    async def _apply_pipelined(
        self, decoded: list[_Decoded], seen: set[str], embeddings: dict[str, Embedding],
        outcome: BatchOutcome,
    ) -> None:
        """The fast path: every statement of the batch is sent in libpq pipeline mode, runs of
        independent events set-wise (see :mod:`services.projector.runs`), so the projector
        waits no round trip per statement; row counts are checked once the pipeline has synced.
        Any deterministic failure sends the batch to the careful path."""
        planned = [p for item in decoded if (p := self._plan_one(item, seen, embeddings, outcome))]
        pending: list[tuple[psycopg.AsyncCursor[Any], Statement, int]] = []
        try:
            async with self.conn.pipeline():
                for run in independent_runs(planned):
                    for position, statement in enumerate(run[0].statements):
                        cursor = self.conn.cursor()
                        await cursor.executemany(
                            statement.query, [item.statements[position].params for item in run])
                        pending.append((cursor, statement, len(run)))
            for cursor, statement, events in pending:
                if statement.expect_rows is not None and (
                        cursor.rowcount != statement.expect_rows * events):
                    # Which event contradicts the read model is found by the careful path.
                    raise InvariantViolation(statement.error.format(**statement.params)
                                             if events == 1 else "a run of events failed")
        except Exception as exc:
            if is_poison(exc):
                raise _PoisonInBatch from exc
            raise
        for item in planned:
            outcome.applied_by_type[item.event_type] += 1

    async def _execute_with_retries(self, seq: int, statements: list[Statement]
                                    ) -> Exception | None:
        """Run one event's statements in a savepoint, up to ``max_attempts`` times; the last
        deterministic error if every attempt failed."""
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.conn.transaction():  # a savepoint inside the batch
                    for statement in statements:
                        await self._execute(statement)
            except Exception as exc:
                if not is_poison(exc):
                    raise
                error = exc
                log.info("event_apply_failed", seq=seq, attempt=attempt, error=str(exc))
                continue
            return None
        return error

    async def _execute(self, statement: Statement) -> None:
        cur = await self.conn.execute(statement.query, statement.params)
        if statement.expect_rows is not None and cur.rowcount != statement.expect_rows:
            raise InvariantViolation(statement.error.format(**statement.params))

    async def _finish(self, outcome: BatchOutcome) -> None:
        async with self.conn.cursor() as cur:
            if outcome.dead_letters:
                await cur.executemany(
                    "INSERT INTO dead_letters (consumer, seq, event_id, subject, error, attempts,"
                    " raw) VALUES ('projector', %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(d.seq, d.event_id, d.subject, d.error, d.attempts, d.raw)
                     for d in outcome.dead_letters],
                )
                marks = [(d.seq, *target) for d in outcome.dead_letters
                         if (target := memory_of_subject(d.subject)) is not None]
                if marks:
                    await cur.executemany(
                        "UPDATE memories SET diverged_seq = least(coalesce(diverged_seq, %s), %s)"
                        " WHERE ns = %s AND memory_id = %s",
                        [(seq, seq, ns, memory_id) for seq, ns, memory_id in marks],
                    )
            await cur.execute(
                "INSERT INTO projection_checkpoints (name, last_seq) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET last_seq = EXCLUDED.last_seq,"
                " updated_at = now()",
                (CHECKPOINT_NAME, outcome.last_seq),
            )
            if self.notify_channel:
                await cur.execute("SELECT pg_notify(%s, %s)",
                                  (self.notify_channel, str(outcome.last_seq)))


class _PoisonInBatch(Exception):
    """The fast path met a poison event: redo the batch with savepoints."""


@dataclass(frozen=True, slots=True)
class _Decoded:
    delivery: Delivery
    event: Event | None
    error: MnemosError | None


def _texts_to_embed(decoded: Sequence[_Decoded]) -> list[str]:
    return [t for item in decoded if item.error is None and item.event
            and is_projected(item.event) and (t := content_of(item.event)) is not None]


async def embed_ahead(
    conn: Conn, embedder: Embedder, deliveries: Sequence[Delivery], checkpoint: int
) -> dict[str, Embedding]:
    """Embed (through the cache, on ``conn``) the contents of deliveries not yet applied.

    The consumer runs this for the next batch while the current one is being written, on a
    second connection: embedding is the projector's bottleneck and needs no ordering. Only the
    embedding cache is touched, which is idempotent, so a crash loses nothing but the work.
    """
    fresh = [_decode(d) for d in deliveries if d.seq > checkpoint]
    return await embed_contents(conn, embedder, _texts_to_embed(fresh))


def _decode(delivery: Delivery) -> _Decoded:
    try:
        event = decode_event(delivery.data)
    except MnemosError as exc:
        return _Decoded(delivery, None, exc)
    try:
        check_subject(event, delivery.subject)
    except MnemosError as exc:
        return _Decoded(delivery, event, exc)
    return _Decoded(delivery, event, None)
