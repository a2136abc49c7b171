"""The projector's consumer loop: leadership, the durable consumer, batches, retries.

Only one instance projects a schema at a time, because projections must apply events in stream
order. The active instance holds a session advisory lock *on the connection that commits the
projections*: if that connection dies, the lock goes with it, so a projector that lost its lock
can never commit again (no split brain). Other instances wait as hot standbys and poll the lock.

On every takeover the durable consumer is recreated to start at checkpoint + 1. A crashed
leader's unacknowledged messages would otherwise only come back after ``ack_wait``, behind newer
ones, and the checkpoint rule (skip seq <= checkpoint) would then drop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg.conninfo import make_conninfo

from libs.embeddings import Embedder
from libs.events import (
    DEADLETTER_STREAM,
    EVENTS_STREAM,
    HDR_MSG_ID,
    deadletter_subject,
    durable_consumer_config,
)
from libs.readmodel.projections import Embedding
from libs.readmodel.schema import advisory_key
from libs.readmodel.statistics import refresh_statistics
from libs.runtime.database import connect_async
from libs.runtime.logging import get_logger
from services.projector.batch import BatchApplier, Conn, embed_ahead, is_transient
from services.projector.deliveries import DeadLetter, Delivery
from services.projector.metrics import (
    BATCH_SECONDS,
    CHECKPOINT_SEQ,
    CONSUMER_PENDING,
    LEADER,
    TRANSIENT_ERRORS,
)

__all__ = [
    "CONSUMER_NAME",
    "HDR_ATTEMPTS",
    "HDR_CONSUMER",
    "HDR_ERROR",
    "HDR_ORIGINAL_SEQ",
    "HDR_ORIGINAL_SUBJECT",
    "NOTIFY_CHANNEL",
    "Projector",
    "ProjectorSettings",
]

log = get_logger(__name__)

CONSUMER_NAME: Final = "projector"
"""Durable consumer of the live projector."""

NOTIFY_CHANNEL: Final = "mnemos_projected"
"""Postgres channel notified with the checkpoint after each batch (read-your-writes waits)."""

HDR_ORIGINAL_SEQ: Final = "Mnemos-Original-Seq"
HDR_ORIGINAL_SUBJECT: Final = "Mnemos-Original-Subject"
HDR_ERROR: Final = "Mnemos-Error"
HDR_ATTEMPTS: Final = "Mnemos-Attempts"
HDR_CONSUMER: Final = "Mnemos-Consumer"


@dataclass(frozen=True)
class ProjectorSettings:
    """How one projector instance runs.

    ``fenced`` makes batches hold the replay swap fence (the live schema); a replay's own
    rebuild runs unfenced, without notifications and without republishing dead letters.
    """

    database_url: str
    schema: str
    consumer: str = CONSUMER_NAME
    notify_channel: str | None = NOTIFY_CHANNEL
    publish_dead_letters: bool = True
    fenced: bool = True
    batch_size: int = 256
    embed_ahead: int = 2
    fetch_timeout_s: float = 1.0
    standby_poll_s: float = 1.0
    max_attempts: int = 3
    max_backoff_s: float = 10.0


class _Backoff:
    """Exponential delay between reconnects, reset by a successful batch."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s, self.current_s = first_s, max_s, first_s

    def next(self) -> float:
        delay, self.current_s = self.current_s, min(self.current_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self.current_s = self.first_s


@dataclass(frozen=True)
class _Ahead:
    """A batch fetched ahead of the one being written, its embedding task and connection."""

    msgs: Sequence[Any]
    task: asyncio.Task[dict[str, Embedding]]
    conn: Conn


def _delivery(msg: Any) -> Delivery:
    return Delivery(seq=msg.metadata.sequence.stream, subject=msg.subject, data=msg.data,
                    msg_id=(msg.headers or {}).get(HDR_MSG_ID))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Projector:
    """One projector instance: standby until it holds the lock, then the consumer loop."""

    def __init__(self, settings: ProjectorSettings, js: JetStreamContext, embedder: Embedder,
                 on_checkpoint: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.js = js
        self.embedder = embedder
        self.on_checkpoint = on_checkpoint
        self.checkpoint = 0
        self._backoff = _Backoff(0.25, settings.max_backoff_s)

    async def run(self, stop: asyncio.Event, until_seq: int | None = None) -> int:
        """Project until ``stop`` is set (or the checkpoint reaches ``until_seq``).

        Transient failures (lost connections, timeouts) are survived by reconnecting with
        back-off; the batch in flight is rolled back and not acknowledged, and redelivery plus
        the checkpoint make the retry effectively-once. Returns the last committed sequence.
        """
        while not stop.is_set():
            try:
                if await self._session(stop, until_seq):
                    break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                TRANSIENT_ERRORS.labels(self.settings.schema).inc()
                delay = self._backoff.next()
                log.warning("projector_retrying", error=f"{type(exc).__name__}: {exc}",
                            in_s=delay, schema=self.settings.schema)
                await _sleep_or_stop(stop, delay)
        return self.checkpoint

    async def _session(self, stop: asyncio.Event, until_seq: int | None) -> bool:
        """One database session; True when ``until_seq`` was reached."""
        s = self.settings
        # The pid in the application name tells operators which process holds the lock.
        url = make_conninfo(s.database_url,
                            application_name=f"mnemos-{s.consumer}-{os.getpid()}")
        conn = await connect_async(url, s.schema, autocommit=True)
        try:
            if not await self._lead(conn, stop):
                return False
            LEADER.labels(s.schema).set(1)
            fence = advisory_key("swap", s.schema) if s.fenced else None
            applier = BatchApplier(conn, self.embedder, schema=s.schema,
                                   notify_channel=s.notify_channel, fence_key=fence,
                                   max_attempts=s.max_attempts)
            self.checkpoint = await applier.read_checkpoint()
            CHECKPOINT_SEQ.labels(s.schema).set(self.checkpoint)
            log.info("projector_active", schema=s.schema, checkpoint=self.checkpoint)
            if until_seq is not None and self.checkpoint >= until_seq:
                return True
            sub = await self._reset_consumer()
            # A bounded run (replay's rebuild) never fetches ahead, so it needs no extra sessions.
            embed_conns = [await connect_async(url, s.schema, autocommit=True)
                           for _ in range(s.embed_ahead if until_seq is None else 0)]
            try:
                return await self._consume(sub, applier, embed_conns, stop, until_seq)
            finally:
                for embed_conn in embed_conns:
                    await embed_conn.close()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        finally:
            LEADER.labels(s.schema).set(0)
            await conn.close()

    async def _lead(self, conn: Conn, stop: asyncio.Event) -> bool:
        """Wait (hot standby) until this instance holds the projector lock of the schema."""
        key = advisory_key("projector", self.settings.schema)
        announced = False
        while not stop.is_set():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key,))
            row = await cur.fetchone()
            if row and row["held"]:
                return True
            if not announced:
                log.info("projector_standby", schema=self.settings.schema)
                announced = True
            await _sleep_or_stop(stop, self.settings.standby_poll_s)
        return False

    async def _reset_consumer(self) -> Any:
        """(Re)create the durable consumer at checkpoint + 1 and bind a pull subscription."""
        name = self.settings.consumer
        config = durable_consumer_config(name)
        if self.checkpoint > 0:
            config = dataclasses.replace(config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                         opt_start_seq=self.checkpoint + 1)
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(EVENTS_STREAM, name)
        await self.js.add_consumer(EVENTS_STREAM, config)
        return await self.js.pull_subscribe_bind(name, stream=EVENTS_STREAM)

    async def _consume(self, sub: Any, applier: BatchApplier, embed_conns: list[Conn],
                       stop: asyncio.Event, until_seq: int | None) -> bool:
        """Fetch, apply, acknowledge, in stream order.

        Under a backlog the loop is a pipeline: while batch N is written (one transaction on the
        main connection), up to ``embed_ahead`` later batches are already fetched and being
        embedded, each on its own connection. With two ahead, the embedder's workers pick up
        the next batch's chunks as soon as they finish the current one, instead of idling
        through each batch's last chunk and the fetch between batches. Batches are still
        applied and acknowledged strictly in order.
        """
        s = self.settings
        ahead: deque[_Ahead] = deque()
        idle = list(embed_conns)
        try:
            while not stop.is_set():
                embedded: dict[str, Embedding] | None = None
                if ahead:
                    step = ahead.popleft()
                    msgs = step.msgs
                    try:
                        embedded = await step.task
                    finally:
                        idle.append(step.conn)
                else:
                    limit = s.batch_size if until_seq is None else min(
                        s.batch_size, until_seq - self.checkpoint)
                    try:
                        msgs = await sub.fetch(limit, timeout=s.fetch_timeout_s)
                    except TimeoutError:
                        # nats-py raises its own TimeoutError or a plain asyncio one,
                        # depending on where the deadline ran out; both mean "no message".
                        continue
                last = ahead[-1].msgs if ahead else msgs
                while (until_seq is None and idle and last and
                       last[-1].metadata.num_pending > 0):
                    step_ahead = await self._fetch_ahead(sub, idle[-1], last)
                    if step_ahead is None:
                        break
                    idle.pop()
                    ahead.append(step_ahead)
                    last = step_ahead.msgs
                await self._handle(msgs, applier, until_seq, embedded)
                self._backoff.reset()
                if until_seq is not None and self.checkpoint >= until_seq:
                    return True
            return False
        finally:
            for step in ahead:
                step.task.cancel()
            for step in ahead:
                with contextlib.suppress(BaseException):
                    await step.task

    async def _fetch_ahead(self, sub: Any, embed_conn: Conn, current: Sequence[Any]
                           ) -> _Ahead | None:
        """Fetch the batch after ``current`` and start embedding it on ``embed_conn``; None if
        nothing arrived quickly."""
        try:
            msgs = await sub.fetch(self.settings.batch_size, timeout=0.2)
        except TimeoutError:  # either kind nats-py raises (see _consume)
            return None
        after = current[-1].metadata.sequence.stream
        deliveries = [_delivery(m) for m in msgs]
        task = asyncio.create_task(embed_ahead(embed_conn, self.embedder, deliveries, after))
        return _Ahead(msgs, task, embed_conn)

    async def _handle(self, msgs: Sequence[Any], applier: BatchApplier, until_seq: int | None,
                      embedded: dict[str, Embedding] | None = None) -> None:
        started = time.perf_counter()
        if until_seq is not None:
            msgs = [m for m in msgs if m.metadata.sequence.stream <= until_seq]
        deliveries = [_delivery(m) for m in msgs]
        publish = self._publish_dead_letters if self.settings.publish_dead_letters else None
        outcome = await applier.apply(deliveries, self.checkpoint, publish, embedded)
        # Acknowledge only after the commit: a crash before this point means redelivery, and
        # the checkpoint turns the redelivered messages into skips.
        for msg in msgs:
            await msg.ack()
        before, self.checkpoint = self.checkpoint, outcome.last_seq
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.checkpoint)
        schema = self.settings.schema
        CHECKPOINT_SEQ.labels(schema).set(self.checkpoint)
        if msgs:
            CONSUMER_PENDING.labels(schema).set(msgs[-1].metadata.num_pending)
        BATCH_SECONDS.labels(schema).observe(time.perf_counter() - started)
        await refresh_statistics(applier.conn, before, self.checkpoint)

    async def _publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        consumer = self.settings.consumer
        for letter in letters:
            headers = {
                # Idempotent: a batch retried after a crash republishes under the same id.
                HDR_MSG_ID: f"{consumer}-{letter.seq}",
                HDR_ORIGINAL_SEQ: str(letter.seq),
                HDR_ORIGINAL_SUBJECT: letter.subject,
                HDR_ERROR: letter.error.encode("ascii", "backslashreplace").decode(),
                HDR_ATTEMPTS: str(letter.attempts),
                HDR_CONSUMER: consumer,
            }
            await self.js.publish(deadletter_subject(consumer, letter.ns), letter.raw,
                                  headers=headers, stream=DEADLETTER_STREAM)
