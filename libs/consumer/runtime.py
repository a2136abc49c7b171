"""The one durable-consumer runtime: every service that folds the stream runs on it.

A service supplies a :class:`ConsumerHandler` (its pure logic and its transaction); the runtime
does the rest, the same way for all:

- **leadership**: one active instance per role and schema holds a session advisory lock on the
  connection that commits (:mod:`.leadership`); others wait as hot standbys;
- **takeover**: the durable consumer is recreated at checkpoint + 1, so a previous instance's
  unacknowledged deliveries never come back out of order;
- **pull** with bounded waits (:class:`~libs.consumer.stream.BatchPuller`), up to ``ahead``
  batches prepared concurrently while one is applied, batches applied strictly in order;
- **ack after commit**: the handler commits its output *and its checkpoint* in one transaction,
  then the runtime acknowledges the batch (cumulatively); a redelivered message at or below the
  checkpoint is acknowledged and skipped;
- **faults**: a lost broker or database is retried with exponential back-off, forever, saying
  what it waits for; a deterministic failure is the handler's to dead-letter;
- **watchdog**: a consumer whose checkpoint stops moving while its stream grows, with no batch
  in progress, is restarted (logged and counted); a batch in progress is bounded by
  ``apply_timeout_s`` instead (slow is not stuck), and every wait is bounded;
- **stop**: returns within a batch of ``stop`` being set (SIGTERM).

A consumer whose work needs no order (each message on its own, e.g. compressing a version) runs
``shared``: no leader, every instance pulls from one durable consumer and acknowledges each
message after handling it; what a killed instance took is redelivered to another after
``ack_wait_s`` (``Delivery.delivered`` counts the attempts, for the handler's dead letters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import structlog

from libs.consumer import metrics
from libs.consumer.contract import (
    Conn,
    ConsumerHandler,
    ConsumerSettings,
    Halt,
    Takeover,
    is_transient,
)
from libs.consumer.deliveries import (
    Delivery,
    delivery_of,
    pending_of,
    stored_ns_of,
    stream_seq_of,
    trace_of,
)
from libs.consumer.leadership import advisory_key, sleep_or_stop, wait_for_lock
from libs.consumer.stream import (
    BatchPuller,
    ack_floor,
    reset_consumer,
    shared_consumer,
    stream_bounds,
)
from libs.events import EVENTS_STREAM
from libs.runtime.health import State, forget_state, report_state
from libs.runtime.logging import get_logger

__all__ = ["ConsumerRuntime"]

log = get_logger(__name__)

P = TypeVar("P")


STALL_GRACE_S: Final = 5.0
"""How long a stalled (or stopping) consume loop gets to notice before it is cancelled."""


class _Stalled(Exception):
    """The watchdog found no progress while the stream grew."""


@dataclass
class _Batch(Generic[P]):
    msgs: list[Any]
    deliveries: list[Delivery]
    prepared: asyncio.Task[P]


class ConsumerRuntime(Generic[P]):
    """One instance of a consumer: standby until it holds the lock, then the consume loop."""

    def __init__(self, settings: ConsumerSettings, handler: ConsumerHandler[P], nc: Any,
                 on_checkpoint: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.handler = handler
        self.nc = nc
        self.js = nc.jetstream()
        self.on_checkpoint = on_checkpoint
        self.checkpoint = 0
        self._progress_at = time.monotonic()
        self._halted = False
        self._stalled = False
        self._in_batch = False
        self._retrying = False
        self._labels = (settings.name, settings.schema)
        self._oldest_held_ns: int | None = None
        """Stored time of the first message pulled but not committed (None: none held)."""
        metrics.LAG_SECONDS.labels(*self._labels).set_function(self._lag_seconds)

    def _lag_seconds(self) -> float:
        held = self._oldest_held_ns
        return 0.0 if held is None else max(0.0, time.time() - held / 1e9)

    def _state(self, state: State) -> None:
        report_state(f"consumer:{self.settings.name}", state)

    async def run(self, stop: asyncio.Event, until_seq: int | None = None) -> int:
        """Consume until ``stop`` is set (or the checkpoint reaches ``until_seq``); return the
        last committed sequence."""
        s = self.settings
        delay = s.first_backoff_s
        self._state("starting")
        try:
            while not stop.is_set():
                if await self._attempt(stop, until_seq, delay):
                    break
                delay = min(delay * 2, s.max_backoff_s) if self._retrying else s.first_backoff_s
        finally:
            forget_state(f"consumer:{self.settings.name}")
            self._oldest_held_ns = None
        return self.checkpoint

    async def _attempt(self, stop: asyncio.Event, until_seq: int | None, delay: float) -> bool:
        """One session, a transient failure waited out; True when ``until_seq`` was reached."""
        s = self.settings
        self._retrying = False
        try:
            return await self._session(stop, until_seq)
        except _Stalled:
            return False  # reconnect at once; the watchdog has said why
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._retrying = True
            self._state("retrying")
            self._oldest_held_ns = None
            metrics.TRANSIENT_ERRORS.labels(*self._labels).inc()
            log.warning("consumer_retrying", consumer=s.name, in_s=delay,
                        error=f"{type(exc).__name__}: {exc}"[:300])
            await sleep_or_stop(stop, delay)
            return False

    async def _session(self, stop: asyncio.Event, until_seq: int | None) -> bool:
        """One connection's worth of work; True when ``until_seq`` was reached."""
        s = self.settings
        try:
            conn = await asyncio.wait_for(s.connect(), s.connect_timeout_s)
        except Exception as exc:
            if is_transient(exc):
                log.info("consumer_waiting_for_database", consumer=s.name,
                         error=str(exc).strip()[:200])
            raise
        try:
            if not s.shared:
                held = await wait_for_lock(
                    conn, advisory_key(s.role, s.schema), stop, s.standby_poll_s,
                    on_standby=self._on_standby)
                if not held:
                    return False
            metrics.LEADER.labels(*self._labels).set(1)
            try:
                return await self._lead(conn, stop, until_seq)
            except Halt as why:
                self._state("halted")
                # Still holding the lock: no standby goes past the problem either.
                log.error("consumer_halted", consumer=s.name, reason=str(why),
                          checkpoint=self.checkpoint, retry_in_s=s.halt_recheck_s)
                self._halted = True
                await sleep_or_stop(stop, s.halt_recheck_s)
                return False
        finally:
            metrics.LEADER.labels(*self._labels).set(0)
            await self.handler.close()
            with contextlib.suppress(Exception):
                await conn.close()

    def _on_standby(self) -> None:
        self._state("standby")
        log.info("consumer_standby", consumer=self.settings.name, schema=self.settings.schema)

    async def _lead(self, conn: Conn, stop: asyncio.Event, until_seq: int | None) -> bool:
        s = self.settings
        floor = await asyncio.wait_for(ack_floor(self.js, s.name), s.connect_timeout_s)
        self.checkpoint = await self.handler.start(conn, Takeover(floor))
        self._publish_checkpoint()
        log.info("consumer_active", consumer=s.name, schema=s.schema, checkpoint=self.checkpoint,
                 shared=s.shared)
        if until_seq is not None and self.checkpoint >= until_seq:
            return True
        if s.shared:
            puller = await asyncio.wait_for(
                shared_consumer(self.nc, self.js, s.name, s.filter_subject, s.max_ack_pending,
                                s.ack_wait_s), s.connect_timeout_s)
        else:
            puller, _ = await asyncio.wait_for(
                reset_consumer(self.nc, self.js, s.name, self.checkpoint + 1, s.max_ack_pending),
                s.connect_timeout_s)
        self._progress_at, self._halted, self._stalled = time.monotonic(), False, False
        self._state("active")
        work = asyncio.create_task(self._consume(conn, puller, stop, until_seq))
        watchdog = asyncio.create_task(self._watch(work))
        try:
            await asyncio.wait({work, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # Stalled: the consume loop sees the flag at its next turn (every wait in it is
                # bounded); if it does not, it is cancelled.
                await asyncio.wait({work}, timeout=s.fetch_wait_s + STALL_GRACE_S)
            if work.done():
                return work.result()
            raise _Stalled()
        finally:
            for task in (watchdog, work):
                task.cancel()
            await asyncio.wait({watchdog, work}, timeout=STALL_GRACE_S)
            await puller.close()

    async def _watch(self, work: asyncio.Task[bool]) -> bool:
        """Flag a stall (and return True) if the checkpoint stands while the stream grows."""
        s = self.settings
        while not work.done():
            await asyncio.sleep(max(s.stall_after_s / 4, 0.05))
            if self._halted or time.monotonic() - self._progress_at < s.stall_after_s:
                continue
            if self._in_batch:
                # A batch is being prepared or applied: slow under load is not stuck, and both
                # steps are bounded by apply_timeout_s themselves. Restarting would redo the
                # same work and never finish (a livelock seen with embeddings on a busy box).
                continue
            try:
                if s.shared:  # progress is the server's: is anything waiting for us?
                    info = await asyncio.wait_for(self.js.consumer_info(EVENTS_STREAM, s.name),
                                                  5.0)
                    last = self.checkpoint + int(info.num_pending or 0)
                else:
                    _, last = await asyncio.wait_for(stream_bounds(self.js), 5.0)
            except Exception:  # the broker is away; the consume loop sees that itself
                continue
            if last > self.checkpoint:
                metrics.STALLS.labels(*self._labels).inc()
                log.error("consumer_stalled", consumer=s.name, checkpoint=self.checkpoint,
                          stream_last_seq=last, stalled_s=round(time.monotonic()
                                                                - self._progress_at, 1),
                          action="restarting the consumer")
                self._stalled = True
                return True
            self._progress_at = time.monotonic()  # idle, not stalled
        return False

    def _publish_checkpoint(self) -> None:
        metrics.CHECKPOINT_SEQ.labels(*self._labels).set(self.checkpoint)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.checkpoint)

    def _stage(self, msgs: list[Any], until_seq: int | None) -> _Batch[P]:
        if self._oldest_held_ns is None and msgs:
            self._oldest_held_ns = stored_ns_of(msgs[0].reply)
        if self.settings.shared:
            return _Batch(msgs, [delivery_of(m) for m in msgs],
                          asyncio.ensure_future(self.handler.prepare(
                              [delivery_of(m) for m in msgs])))
        deliveries = [d for d in map(delivery_of, msgs) if d.seq > self.checkpoint
                      and (until_seq is None or d.seq <= until_seq)]
        return _Batch(msgs, deliveries, asyncio.ensure_future(self.handler.prepare(deliveries)))

    async def _consume(self, conn: Conn, puller: BatchPuller, stop: asyncio.Event,
                       until_seq: int | None) -> bool:
        s = self.settings
        staged: deque[_Batch[P]] = deque()
        pulling: asyncio.Future[None] | None = None
        try:
            while not stop.is_set():
                if self._stalled:
                    raise _Stalled()
                if not staged:
                    limit = s.batch_size if until_seq is None else max(
                        1, min(s.batch_size, until_seq - self.checkpoint))
                    msgs = await puller.pull(limit, s.fetch_wait_s)
                    if not msgs:
                        await self.handler.idle(conn)
                        continue
                    staged.append(self._stage(msgs, until_seq))
                batch = staged.popleft()
                # The batches ahead are pulled (and start preparing) while this one is written,
                # so the broker round trip and the parsing of its messages are off the path.
                pulling = asyncio.ensure_future(self._stage_ahead(puller, staged, batch,
                                                                  until_seq))
                await self._apply(conn, batch)
                await pulling
                pulling = None
                if until_seq is not None and self.checkpoint >= until_seq:
                    return True
            return False
        finally:
            if pulling is not None:
                pulling.cancel()
                await asyncio.gather(pulling, return_exceptions=True)
            for batch in staged:
                batch.prepared.cancel()
            await asyncio.gather(*(b.prepared for b in staged), return_exceptions=True)

    async def _stage_ahead(self, puller: BatchPuller, staged: deque[_Batch[P]],
                           current: _Batch[P], until_seq: int | None) -> None:
        """Stage up to ``ahead`` batches after ``current`` (the one being applied) from what
        the server has ready, without waiting for more."""
        last = staged[-1] if staged else current
        while (len(staged) < self.settings.ahead
               and pending_of(last.msgs[-1].reply) > 0
               and (limit := self._ahead_limit(last, until_seq)) > 0):
            more = await puller.pull_ready(limit)
            if not more:
                return
            last = self._stage(more, until_seq)
            staged.append(last)

    def _ahead_limit(self, last: _Batch[P], until_seq: int | None) -> int:
        """How many messages to stage after ``last``: a bounded run never pulls past its end."""
        if until_seq is None:
            return self.settings.batch_size
        return min(self.settings.batch_size, until_seq - stream_seq_of(last.msgs[-1].reply))

    async def _apply(self, conn: Conn, batch: _Batch[P]) -> None:
        self._in_batch = True
        try:
            await self._apply_batch(conn, batch)
        finally:
            self._in_batch = False

    async def _apply_batch(self, conn: Conn, batch: _Batch[P]) -> None:
        s = self.settings
        started = time.perf_counter()
        prepared = await asyncio.wait_for(batch.prepared, s.apply_timeout_s)
        if s.shared:
            await asyncio.wait_for(self.handler.apply(conn, batch.deliveries, prepared),
                                   s.apply_timeout_s)
            for msg in batch.msgs:  # each on its own: the others belong to other instances
                await msg.ack()
            self.checkpoint = max([self.checkpoint, *(d.seq for d in batch.deliveries)])
            self._after_batch(batch, started)
            return
        if batch.deliveries:
            expected = self.checkpoint + 1
            for delivery in batch.deliveries:
                if delivery.seq != expected:
                    await self.handler.on_gap(conn, expected, delivery.seq)
                expected = delivery.seq + 1
            self.checkpoint = await asyncio.wait_for(
                self.handler.apply(conn, batch.deliveries, prepared), s.apply_timeout_s)
        # Acknowledge only after the commit: a crash before this point means redelivery, and
        # the checkpoint turns the redelivered messages into skips.
        await batch.msgs[-1].ack()
        self._after_batch(batch, started)

    def _after_batch(self, batch: _Batch[P], started: float) -> None:
        self._progress_at = time.monotonic()
        self._publish_checkpoint()
        metrics.EVENTS_HANDLED.labels(*self._labels).inc(len(batch.deliveries))
        pending = pending_of(batch.msgs[-1].reply)
        metrics.PENDING.labels(*self._labels).set(pending)
        # The next message in hand is the first of the next staged batch (set when it is
        # staged); with messages pending but none staged yet, this batch's last one is the
        # closest known bound.
        self._oldest_held_ns = stored_ns_of(batch.msgs[-1].reply) if pending else None
        metrics.BATCH_SECONDS.labels(*self._labels).observe(time.perf_counter() - started)
        if log.is_enabled_for(logging.DEBUG):
            self._log_handled(batch.deliveries)

    def _log_handled(self, deliveries: Sequence[Delivery]) -> None:
        """At debug level, one line per handled event with its correlation and command ids
        bound, so one command can be followed through every service by its correlation id."""
        for delivery in deliveries:
            with structlog.contextvars.bound_contextvars(**trace_of(delivery.data)):
                log.debug("event_handled", consumer=self.settings.name, seq=delivery.seq,
                          subject=delivery.subject)
