"""The compressor on the stream: version events in, ``MemoryCompressed`` events out.

Runs on the shared consumer runtime in its *shared* mode (:mod:`libs.consumer.runtime`):
compressing a version needs no order, so every instance pulls from one durable consumer
(``compressor``, filter ``mnemos.evt.*.memory.*``) and each message is acknowledged after its
compression is stored in the stream. What a killed instance had taken comes back to another
after ``ack_wait_s`` and is compressed again to the very same event (below), so nothing is lost
and nothing is duplicated.

For each version event (created, revised, committed, merged, reverted) of at least
``min_tokens`` tokens:

1. the receipt ids are computed before any engine runs (they depend on the version, its input,
   the engines and the settings, never on the result); receipts the read models already hold
   are not recomputed (a consumer reset, or a re-run past the duplicate window);
2. the offline contest runs (in a worker thread) and its ``MemoryCompressed`` is published at
   once, with a bounded wait;
3. with LLM engines configured, the LLM round runs next (each call bounded by its own timeout
   and circuit breaker) and the full contest is published as a second receipt. A dead provider
   therefore never delays the offline receipts.

The event's command id is derived from the receipt id and the version event's command id, its
event id (and ``Nats-Msg-Id``) from that, so publishing the same compression again is dropped by
JetStream's duplicate window.

A message that cannot be compressed whatever the retries (undecodable bytes, text the compressor
refuses, a bug in an engine's surroundings) is dead-lettered at once to
``mnemos.dlq.compressor.<ns>`` and acknowledged; the next message is compressed as usual. A lost
broker or database is transient: nothing is acknowledged, the runtime reconnects, and the
messages come back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from libs.consumer import (
    ConsumerRuntime,
    ConsumerSettings,
    DeadLetter,
    Delivery,
    Takeover,
    dead_letter,
    is_transient,
    publish_dead_letters,
)
from libs.events import (
    AGGREGATE_MEMORY,
    HDR_MSG_ID,
    Actor,
    Event,
    InvalidInput,
    MemoryCommitted,
    MemoryCompressed,
    MemoryCreated,
    MemoryMerged,
    MemoryReverted,
    MemoryRevised,
    Unavailable,
    decode_event,
    derive_event_id,
    encode_event,
    event_subject,
)
from libs.events.compression import (
    COMPRESSOR_PRINCIPAL,
    MemoryCompressedData,
    compression_command_id,
)
from libs.readmodel.compressions import known_receipts
from libs.runtime.logging import get_logger
from services.compressor.compressor import Compression, Compressor, Subject
from services.compressor.metrics import ENGINE_WINS, ON_WRITE_LAG, OUTCOMES

__all__ = [
    "CONSUMER_NAME",
    "FILTER_SUBJECT",
    "VERSION_EVENTS",
    "CompressorHandler",
    "CompressorSettings",
    "compression_event",
    "compressor_runtime",
]

log = get_logger(__name__)

CONSUMER_NAME: Final = "compressor"
"""The shared durable consumer every compressor instance pulls from."""

FILTER_SUBJECT: Final = f"mnemos.evt.*.{AGGREGATE_MEMORY}.*"
"""What the compressor reads: memory events of every namespace."""

VERSION_EVENTS: Final = (MemoryCreated, MemoryRevised, MemoryCommitted, MemoryMerged,
                         MemoryReverted)
"""Events that create a version (each carries its content and version id)."""

VersionEvent = MemoryCreated | MemoryRevised | MemoryCommitted | MemoryMerged | MemoryReverted

Conn = Any

ACTOR: Final = Actor(principal=COMPRESSOR_PRINCIPAL)


def compression_event(source: VersionEvent, data: MemoryCompressedData,
                      at: datetime) -> MemoryCompressed:
    """The ``MemoryCompressed`` event of ``data``, a compression of ``source``'s version.

    Same source and receipt, same command id and event id: the event is idempotent."""
    command_id = compression_command_id(source.command_id, data.receipt.receipt_id)
    return MemoryCompressed(
        id=derive_event_id(source.ns, command_id, 0), schema=MemoryCompressed.SCHEMA,
        ns=source.ns, aggregate=AGGREGATE_MEMORY, aggregate_id=source.aggregate_id,
        actor=ACTOR, command_id=command_id, correlation_id=source.correlation_id, at=at,
        data=data)


@dataclass(frozen=True)
class CompressorSettings:
    """How the compressor consumes (tests shorten the waits)."""

    min_tokens: int
    schema: str = "public"
    batch_size: int = 32
    publish_timeout_s: float = 5.0
    ack_wait_s: float = 30.0
    fetch_wait_s: float = 0.1
    """How long an idle pull lingers: a pull request ends when its batch is full or this
    expires, so it bounds the on-write lag at low ingest (idle cost: that many pulls/s)."""
    consumer: str = CONSUMER_NAME
    consumer_options: dict[str, Any] = field(default_factory=dict)
    """Further :class:`ConsumerSettings` fields."""


@dataclass(frozen=True, slots=True)
class _Decoded:
    delivery: Delivery
    event: Event | None
    error: BaseException | None = None


@dataclass(slots=True)
class _Job:
    delivery: Delivery
    event: VersionEvent
    subject: Subject
    text: str
    offline_id: str
    full_id: str | None
    known: set[str] = field(default_factory=set)
    offline: Compression | None = None


def _version_of(event: VersionEvent) -> tuple[str, str]:
    return event.data.version_id, event.data.content


class CompressorHandler:
    """The compressor's :class:`~libs.consumer.ConsumerHandler` (shared mode)."""

    def __init__(self, compressor: Compressor, js: Any, settings: CompressorSettings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.compressor = compressor
        self.js = js
        self.settings = settings
        self.clock = clock

    async def start(self, conn: Conn, takeover: Takeover) -> int:
        """Shared consumers keep no checkpoint of their own: the server tracks each message."""
        del conn, takeover
        return 0

    async def prepare(self, deliveries: Sequence[Delivery]) -> list[_Decoded]:
        """Decode the batch (a message that is no event is kept with its error)."""
        out = []
        for delivery in deliveries:
            try:
                out.append(_Decoded(delivery, decode_event(delivery.data)))
            except Exception as exc:
                out.append(_Decoded(delivery, None, exc))
        return out

    async def idle(self, conn: Conn) -> None:
        """Nothing is time-based here."""

    async def on_gap(self, conn: Conn, expected: int, got: int) -> None:
        """Not called in shared mode (the filter skips other subjects)."""

    async def close(self) -> None:
        """Nothing is held between batches."""

    def _plan(self, item: _Decoded) -> _Job | None:
        """The job for one decoded message, None when there is nothing to compress."""
        event = item.event
        if not isinstance(event, VERSION_EVENTS):
            return None
        expected = event_subject(event.ns, event.aggregate, event.aggregate_id)
        if event.aggregate != AGGREGATE_MEMORY or item.delivery.subject != expected:
            raise InvalidInput(f"event stored under {item.delivery.subject!r}, expected "
                               f"{expected!r}")
        version_id, text = _version_of(event)
        if self.compressor.tokens.count(text) < self.settings.min_tokens:
            OUTCOMES.labels("too_short").inc()
            return None
        subject = Subject(memory_id=event.aggregate_id, version_id=version_id)
        llm = bool(self.compressor.llm_engines)
        return _Job(
            delivery=item.delivery, event=event, subject=subject, text=text,
            offline_id=self.compressor.planned_receipt_id(subject, text, with_llm=False),
            full_id=(self.compressor.planned_receipt_id(subject, text, with_llm=True)
                     if llm else None))

    async def apply(self, conn: Conn, deliveries: Sequence[Delivery],
                    prepared: list[_Decoded]) -> int:
        """Compress and publish the batch's versions; dead-letter what cannot be."""
        started = time.perf_counter()
        letters: list[DeadLetter] = []
        jobs: list[_Job] = []
        for item in prepared:
            try:
                if item.error is not None:
                    raise item.error
                job = self._plan(item)
            except Exception as exc:
                if is_transient(exc):
                    raise
                letters.append(self._letter(item.delivery, item.event, exc))
                continue
            if job is not None:
                jobs.append(job)
        known = await known_receipts(conn, [
            (j.event.ns, j.subject.memory_id, rid) for j in jobs
            for rid in (j.offline_id, j.full_id) if rid is not None])
        for job in jobs:
            job.known = {rid for rid in (job.offline_id, job.full_id) if rid in known}
        todo = [j for j in jobs if not {j.offline_id, j.full_id or j.offline_id} <= j.known]
        OUTCOMES.labels("already_recorded").inc(len(jobs) - len(todo))
        planned = time.perf_counter()
        offline = await asyncio.to_thread(self._offline_all, todo)
        compressed = time.perf_counter()
        ready: list[_Job] = []
        publishing = []
        for job, outcome in zip(todo, offline, strict=True):
            if isinstance(outcome, BaseException):
                letters.append(self._letter(job.delivery, job.event, outcome))
                continue
            job.offline = outcome
            ready.append(job)
            if job.offline_id not in job.known:
                publishing.append(self._publish(job, outcome, offline_round=True))
        # Concurrently: each waits for its own stream ack (an fsync per message with
        # sync_interval=always), and the order of compressions does not matter.
        await _all(publishing)
        log.debug("batch_compressed", messages=len(deliveries), versions=len(jobs),
                  compressed=len(todo), plan_ms=round((planned - started) * 1000, 1),
                  offline_ms=round((compressed - planned) * 1000, 1),
                  publish_ms=round((time.perf_counter() - compressed) * 1000, 1))
        if self.compressor.llm_engines:
            await self._llm_round([j for j in ready if j.full_id not in j.known])
        if letters:
            await publish_dead_letters(self.js, self.settings.consumer, letters,
                                       timeout_s=self.settings.publish_timeout_s)
        return max((d.seq for d in deliveries), default=0)

    def _offline_all(self, jobs: Sequence[_Job]) -> list[Compression | BaseException]:
        """The offline contest of each job (CPU-bound: run in a worker thread)."""
        out: list[Compression | BaseException] = []
        for job in jobs:
            try:
                out.append(self.compressor.offline(job.subject, job.text))
            except Exception as exc:
                out.append(exc)
        return out

    async def _llm_round(self, jobs: Sequence[_Job]) -> None:
        async def one(job: _Job) -> None:
            assert job.offline is not None
            try:
                full = await self.compressor.llm_round(job.subject, job.text, job.offline)
            except Exception as exc:  # the engines bound and record their own failures
                log.warning("llm_round_failed", memory_id=job.subject.memory_id,
                            error=f"{type(exc).__name__}: {exc}"[:300])
                return
            await self._publish(job, full, offline_round=False)

        await _all([one(job) for job in jobs])

    async def _publish(self, job: _Job, compression: Compression, *, offline_round: bool) -> None:
        data = compression.data
        if data is None:
            OUTCOMES.labels("no_winner").inc()
            log.info("compression_no_winner", memory_id=job.subject.memory_id,
                     version_id=job.subject.version_id,
                     contest=[(c.engine, c.outcome, c.reason[:80])
                              for c in compression.result.contestants])
            return
        event = compression_event(job.event, data, self.clock())
        subject = event_subject(event.ns, AGGREGATE_MEMORY, event.aggregate_id)
        timeout = self.settings.publish_timeout_s
        try:
            # js.publish waits for the stream's ack with a timeout; wait_for bounds it again
            # (a publish the server never answers must not hold the batch).
            ack = await asyncio.wait_for(
                self.js.publish(subject, encode_event(event), headers={HDR_MSG_ID: event.id},
                                timeout=timeout), timeout + 1.0)
        except Exception as exc:
            raise Unavailable(f"could not store compression {data.receipt.receipt_id}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if ack.duplicate:
            OUTCOMES.labels("duplicate").inc()
            return
        OUTCOMES.labels("published").inc()
        ENGINE_WINS.labels(data.receipt.engine).inc()
        if offline_round:
            ON_WRITE_LAG.observe(max(0.0, (self.clock() - job.event.at).total_seconds()))
        log.info("compressed", memory_id=job.subject.memory_id, version_id=job.subject.version_id,
                 receipt_id=data.receipt.receipt_id, engine=data.receipt.engine,
                 ratio=data.receipt.ratio, seq=int(ack.seq),
                 round="offline" if offline_round else "llm")

    def _letter(self, delivery: Delivery, event: Event | None, exc: BaseException
                ) -> DeadLetter:
        OUTCOMES.labels("dead_lettered").inc()
        log.error("compression_dead_lettered", seq=delivery.seq, subject=delivery.subject,
                  error=f"{type(exc).__name__}: {exc}"[:300])
        return dead_letter(delivery, event, exc, delivery.delivered)


async def _all(work: Sequence[Awaitable[None]]) -> None:
    """Await every item; the first failure is raised after all have finished (none is left
    running behind a batch that failed)."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def compressor_runtime(settings: CompressorSettings, nc: Any, compressor: Compressor,
                       connect: Callable[[], Awaitable[Conn]],
                       clock: Callable[[], datetime] | None = None
                       ) -> ConsumerRuntime[list[_Decoded]]:
    """The compressor as a shared consumer-runtime instance."""
    handler = CompressorHandler(compressor, nc.jetstream(), settings,
                                **({"clock": clock} if clock else {}))
    consumer = ConsumerSettings(
        name=settings.consumer, role="compressor", schema=settings.schema, connect=connect,
        batch_size=settings.batch_size, shared=True, filter_subject=FILTER_SUBJECT,
        ack_wait_s=settings.ack_wait_s,
        **{"fetch_wait_s": settings.fetch_wait_s, **settings.consumer_options})
    return ConsumerRuntime(consumer, handler, nc)

