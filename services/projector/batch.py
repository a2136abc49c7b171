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

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from libs.consumer.dead_letters import DeadLetter, dead_letter
from libs.embeddings import Embedder
from libs.events import MnemosError, Unavailable
from libs.readmodel.bookkeeping import (
    CHECKPOINT_NAME,
    checkpoint_table_oid,
    projected_event_ids,
    read_checkpoint,
    record_batch_end,
)
from libs.readmodel.copy_rows import copy_inserts
from libs.readmodel.embedding_cache import embed_contents
from libs.readmodel.projections import (
    Embedding,
    InvariantViolation,
    Statement,
    event_type,
    project,
)
from libs.runtime.logging import get_logger
from services.projector.decoding import Decoded, texts_by_digest
from services.projector.metrics import DEAD_LETTERED, DUPLICATES_SKIPPED, EVENTS_PROJECTED
from services.projector.runs import Planned, independent_runs

__all__ = [
    "CHECKPOINT_NAME",
    "BatchApplier",
    "BatchOutcome",
    "BatchPlan",
    "SchemaSwapped",
    "is_poison",
]

log = get_logger(__name__)

PLAN_CHUNK: Final = 128
"""Events planned ahead between two yields to the event loop (about 5 ms of work)."""


Conn = psycopg.AsyncConnection[dict[str, object]]


class SchemaSwapped(Unavailable):
    """``mnemos replay`` swapped the read-model schema under this connection: reconnect."""


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did: ``passed_over`` are valid events the read models do not project
    (other aggregates)."""

    last_seq: int
    passed_over: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied_by_type: Counter[str] = field(default_factory=Counter)

    @property
    def applied(self) -> int:
        """Events applied to the read models."""
        return sum(self.applied_by_type.values())


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch's fast-path work made without the database (:meth:`BatchApplier.plan`): what
    was found already (dead letters, duplicates within the batch, passed over) and the runs
    of planned statements, in stream order."""

    outcome: BatchOutcome
    runs: list[list[Planned]]

    def fresh_outcome(self) -> BatchOutcome:
        """A copy of what planning found, for one attempt at applying the batch."""
        found = self.outcome
        return BatchOutcome(found.last_seq, found.passed_over, found.duplicates,
                            list(found.dead_letters), Counter(found.applied_by_type))


def is_poison(exc: BaseException) -> bool:
    """A deterministic failure of one event: retrying the same bytes cannot succeed."""
    if isinstance(exc, Unavailable):
        return False
    return isinstance(exc, MnemosError | psycopg.DataError | psycopg.IntegrityError)


PublishDeadLetters = Callable[[Sequence[DeadLetter]], Awaitable[None]]


class BatchApplier:
    """Applies batches to the read models of one schema over one connection.

    ``copy_min_run``: runs of at least that many events send their inserts with ``COPY``
    (:mod:`libs.readmodel.copy_rows`); None sends every run as pipelined statements.

    ``fence_key`` (live projector only) is the advisory key ``mnemos replay`` takes exclusively
    to swap schemas: every batch holds it shared, and checks that the checkpoint table is still
    the one it started with, so no batch ever straddles or follows a swap unnoticed.
    """

    def __init__(
        self, conn: Conn, embedder: Embedder, *, schema: str, fence_key: int | None,
        max_attempts: int = 3, copy_min_run: int | None = None,
    ) -> None:
        self.conn = conn
        self.embedder = embedder
        self.schema = schema
        self.fence_key = fence_key
        self.max_attempts = max_attempts
        self.copy_min_run = copy_min_run
        self._table_oid: int | None = None

    async def read_checkpoint(self) -> int:
        """The last committed stream sequence (0 before the first event)."""
        self._table_oid = await checkpoint_table_oid(self.conn)
        return await read_checkpoint(self.conn)

    def plan(self, decoded: Sequence[Decoded], embeddings: Mapping[str, Embedding],
             seen: Set[str] = frozenset()) -> BatchPlan:
        """The fast path's statements for a non-empty batch, grouped into runs (see
        :mod:`services.projector.runs`). Pure: the projector plans a batch while the one before
        it is written, with ``seen`` empty; applying replans in the rare batch holding events
        projected already. ``embeddings`` must hold every content of the batch."""
        outcome = BatchOutcome(last_seq=max(item.delivery.seq for item in decoded))
        known = set(seen)
        planned = self._plan_all(decoded, known, embeddings, outcome)
        return BatchPlan(outcome, list(independent_runs(planned)))

    async def plan_ahead(self, decoded: Sequence[Decoded], embeddings: Mapping[str, Embedding]
                         ) -> BatchPlan:
        """:meth:`plan` made while another batch is written on this event loop: it yields
        every :data:`PLAN_CHUNK` events, so the rows of the batch being written keep flowing
        to the server instead of waiting for a whole batch's planning."""
        outcome = BatchOutcome(last_seq=max(item.delivery.seq for item in decoded))
        known: set[str] = set()
        planned: list[Planned] = []
        for start in range(0, len(decoded), PLAN_CHUNK):
            planned += self._plan_all(decoded[start:start + PLAN_CHUNK], known, embeddings,
                                      outcome)
            await asyncio.sleep(0)
        return BatchPlan(outcome, list(independent_runs(planned)))

    def _plan_all(self, decoded: Sequence[Decoded], known: set[str],
                  embeddings: Mapping[str, Embedding], outcome: BatchOutcome) -> list[Planned]:
        return [p for item in decoded
                if (p := self._plan_one(item, known, embeddings, outcome))]

    async def apply(self, decoded: Sequence[Decoded], embeddings: Mapping[str, Embedding],
                    publish_dead_letters: PublishDeadLetters | None = None,
                    plan: BatchPlan | None = None) -> BatchOutcome:
        """Apply a decoded batch (every delivery above the checkpoint, in order) and commit it
        with the new checkpoint. ``embeddings`` (by content hash) may miss some contents; they
        are embedded here. ``plan``: :meth:`plan` of this batch and these embeddings, if made.

        ``publish_dead_letters`` runs inside the transaction, just before the commit, so a dead
        letter is published before it is checkpointed (publishing is idempotent by message id).
        """
        wanted = texts_by_digest(decoded)
        missing = {d: t for d, t in wanted.items() if d not in embeddings}
        ready = dict(embeddings)
        if missing:
            ready.update(await embed_contents(self.conn, self.embedder, missing))
            plan = None  # planned without these vectors
        batch = list(decoded)
        try:
            # Fast path: no savepoints. Poison is rare; when it shows up the batch is rolled
            # back and redone carefully, one savepoint (and bounded retries) per event.
            outcome = await self._apply_batch(batch, ready, publish_dead_letters, plan=plan)
        except _PoisonInBatch:
            outcome = await self._apply_batch(batch, ready, publish_dead_letters, careful=True)
        self._record(outcome)
        return outcome

    async def _apply_batch(
        self, decoded: list[Decoded], embeddings: Mapping[str, Embedding],
        publish_dead_letters: PublishDeadLetters | None, *, careful: bool = False,
        plan: BatchPlan | None = None,
    ) -> BatchOutcome:
        async with self.conn.transaction():
            await self._fence()
            seen = await projected_event_ids(self.conn,
                [i.event.id for i in decoded if i.event is not None and i.projected])
            if careful:
                outcome = BatchOutcome(last_seq=max(item.delivery.seq for item in decoded))
                for item in decoded:
                    await self._apply_one(item, seen, embeddings, outcome)
            else:
                if plan is None or seen:
                    plan = self.plan(decoded, embeddings, seen)
                outcome = plan.fresh_outcome()
                await self._apply_pipelined(plan.runs, outcome)
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
        if await checkpoint_table_oid(self.conn) != self._table_oid:
            raise SchemaSwapped(f"read-model schema {self.schema} was swapped by a replay")

    def _plan_one(
        self, item: Decoded, seen: set[str], embeddings: Mapping[str, Embedding],
        outcome: BatchOutcome,
    ) -> Planned | None:
        """The statements applying one event, or None when it is not applied (recorded in
        ``outcome`` as a dead letter, a duplicate or passed over)."""
        delivery, event = item.delivery, item.event
        if item.error is not None or event is None:
            # Checks of immutable bytes, without the database: retrying cannot help.
            outcome.dead_letters.append(dead_letter(delivery, event, item.error, attempts=1))
            return None
        if not item.projected:
            outcome.passed_over += 1
            return None
        if event.id in seen:
            # The same event appended twice (beyond the duplicate window): already applied.
            outcome.duplicates += 1
            return None
        embedding = embeddings.get(item.digest) if item.digest is not None else None
        try:
            statements = project(event, delivery.seq, embedding)
        except MnemosError as exc:
            outcome.dead_letters.append(dead_letter(delivery, event, exc, attempts=1))
            return None
        seen.add(event.id)
        return Planned(event.id, event_type(event), event.aggregate_id, statements)

    async def _apply_one(
        self, item: Decoded, seen: set[str], embeddings: Mapping[str, Embedding],
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

    async def _apply_pipelined(self, planned_runs: list[list[Planned]], outcome: BatchOutcome
                               ) -> None:
        """The fast path: every statement of the batch is sent in libpq pipeline mode, runs of
        independent events set-wise (long ones with ``COPY``), so the projector waits no round
        trip per statement; row counts are checked once the pipeline has synced. Any
        deterministic failure sends the batch to the careful path."""
        try:
            for copied, runs in itertools.groupby(planned_runs, key=self._copied):
                if copied:
                    for run in runs:
                        await self._copy_run(run)
                else:
                    await self._pipeline_runs(list(runs))
        except Exception as exc:
            if is_poison(exc):
                raise _PoisonInBatch from exc
            raise
        for run in planned_runs:
            for item in run:
                outcome.applied_by_type[item.event_type] += 1

    def _copied(self, run: list[Planned]) -> bool:
        return self.copy_min_run is not None and len(run) >= self.copy_min_run

    async def _pipeline_runs(self, runs: list[list[Planned]]) -> None:
        """Runs sent in libpq pipeline mode, statement *i* of a run as one ``executemany``."""
        pending: list[tuple[psycopg.AsyncCursor[Any], Statement, int]] = []
        async with self.conn.pipeline():
            for run in runs:
                for position, statement in enumerate(run[0].statements):
                    cursor = self.conn.cursor()
                    await cursor.executemany(
                        statement.query, [item.statements[position].params for item in run])
                    pending.append((cursor, statement, len(run)))
        for cursor, statement, events in pending:
            _check_rows(statement, cursor.rowcount, events)

    async def _copy_run(self, run: list[Planned]) -> None:
        """A long run: its inserts with ``COPY``, its other statements as ``executemany``."""
        for position, statement in enumerate(run[0].statements):
            statements = [item.statements[position] for item in run]
            if statement.row is not None:
                rows = await copy_inserts(self.conn, statements)
            else:
                async with self.conn.cursor() as cursor:
                    await cursor.executemany(statement.query, [s.params for s in statements])
                    rows = cursor.rowcount
            _check_rows(statement, rows, len(run))

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
        await record_batch_end(self.conn, outcome.last_seq, outcome.dead_letters)


def _check_rows(statement: Statement, rows: int, events: int) -> None:
    if statement.expect_rows is not None and rows != statement.expect_rows * events:
        # Which event contradicts the read model is found by the careful path.
        raise InvariantViolation(statement.error.format(**statement.params)
                                 if events == 1 else "a run of events failed")


class _PoisonInBatch(Exception):
    """The fast path met a poison event: redo the batch with savepoints."""
