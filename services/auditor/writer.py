"""The chain writer: consume the stream in order, link every message, sign checkpoints.

One batch = one transaction (rows + head + optional checkpoint), then one cumulative ack.
Fetching the next batch overlaps the commit of the current one: the fetch is Python work in
this process, the commit is Postgres work in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.aio.msg import Msg

from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from services.auditor.chain import Head, extend
from services.auditor.checkpoint import checkpoint_due, format_at, sign_checkpoint
from services.auditor.files import checkpoint_dir, write_checkpoint_file
from services.auditor.store import ChainStore, CheckpointRecord
from services.auditor.streamio import (
    CHECKPOINT_SUBJECT,
    BatchPuller,
    checkpoint_record,
    get_message,
    publish_checkpoint,
    reset_consumer,
    stream_bounds,
    stream_seq_of,
)

__all__ = ["BATCH", "ChainWriter"]

log = get_logger(__name__)

BATCH: Final = 5000
"""Messages per fetch and per transaction."""

_IDLE_FETCH_S: Final = 0.5
_GAP_RECHECK_S: Final = 30.0


class _Restart(Exception):
    """Deliveries arrived out of order; recreate the consumer at the head."""


@dataclass
class _CheckpointClock:
    seq: int
    at: float
    new_events: int


class ChainWriter:
    """Extends the chain while holding the writer lock (see :mod:`.store`)."""

    def __init__(self, config: Config, nc: Client, store: ChainStore, key: Ed25519PrivateKey,
                 batch: int = BATCH) -> None:
        self.config = config
        self.nc = nc
        self.js = nc.jetstream()
        self.store = store
        self.key = key
        self.batch = batch
        self.head = Head(0, b"")
        self.clock = _CheckpointClock(0, time.monotonic(), 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Extend until ``stop``; raises on lost database/NATS so the caller can retry."""
        await self.store.ensure_genesis()
        self.head = await self.store.tail()
        await self._publish_pending()
        last = await self.store.last_checkpoint()
        last_seq = last.checkpoint.seq if last else 0
        # Unsigned links from before a restart count as news for the time-based checkpoint.
        self.clock = _CheckpointClock(last_seq, time.monotonic(),
                                      1 if self.head.seq > last_seq else 0)
        while not stop.is_set():
            try:
                await self._consume(stop)
            except _Restart:
                log.warning("auditor_consumer_restart", head=self.head.seq)

    async def _consume(self, stop: asyncio.Event) -> None:
        puller, old_floor = await reset_consumer(self.nc, self.js, self.head.seq + 1,
                                                 2 * self.batch)
        if not await self._check_takeover(old_floor):
            await puller.close()
            await self._halt(stop)
            return
        log.info("auditor_extending", head=self.head.seq)
        queue: asyncio.Queue[list[Msg] | BaseException] = asyncio.Queue(maxsize=2)
        fetcher = asyncio.create_task(self._fetch_loop(puller, queue, stop))
        try:
            while not stop.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=_IDLE_FETCH_S * 2)
                except TimeoutError:
                    item = []
                if isinstance(item, BaseException):
                    raise item
                gap = await self._apply(item)
                if gap is not None:
                    await self._on_gap(*gap, stop)
        finally:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)
            await puller.close()

    async def _fetch_loop(self, puller: BatchPuller,
                          queue: asyncio.Queue[list[Msg] | BaseException],
                          stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                msgs = await puller.pull(self.batch, _IDLE_FETCH_S)
            except Exception as exc:  # surfaced to the writer, which decides
                await queue.put(exc)
                return
            if msgs:
                await queue.put(msgs)

    async def _apply(self, msgs: list[Msg]) -> tuple[int, int] | None:
        """Link one fetched batch, commit it, ack it, and sign a checkpoint if due.

        Returns the ``(expected, got)`` sequence gap that stopped the batch, if any.
        """
        seqs = [stream_seq_of(m.reply) for m in msgs]
        ext = extend(self.head, zip(seqs, (m.data for m in msgs), strict=True))
        done = sum(1 for seq in seqs if seq <= ext.head.seq)
        self.clock.new_events += sum(
            1 for m, seq in zip(msgs, seqs, strict=True)
            if self.head.seq < seq <= ext.head.seq and m.subject != CHECKPOINT_SUBJECT)
        record = self._checkpoint_if_due(ext.head)
        if ext.rows or record is not None:
            await self.store.append(ext.rows, ext.head, record)
            self.head = ext.head
        if record is not None:
            self.clock = _CheckpointClock(record.checkpoint.seq, time.monotonic(), 0)
        if done:
            await msgs[done - 1].ack()
        if record is not None:
            await self._announce(record)
        return ext.gap

    def _checkpoint_if_due(self, head: Head) -> CheckpointRecord | None:
        now = time.monotonic()
        if not checkpoint_due(head.seq, self.clock.seq, now - self.clock.at, self.clock.new_events,
                              self.config.audit_checkpoint_events,
                              self.config.audit_checkpoint_interval_s):
            return None
        at = format_at(datetime.now(UTC))
        return checkpoint_record(sign_checkpoint(self.key, head.seq, head.link, at))

    async def _announce(self, record: CheckpointRecord) -> None:
        """After commit: the operator's file, then the stream event (idempotent on retry)."""
        path = await asyncio.to_thread(write_checkpoint_file, checkpoint_dir(self.config),
                                       record.checkpoint)
        published = await publish_checkpoint(self.js, record)
        await self.store.mark_published(record.checkpoint.seq, published)
        log.info("audit_checkpoint_signed", seq=record.checkpoint.seq, link=record.checkpoint.link,
                 file=str(path), event_seq=published)

    async def _publish_pending(self) -> None:
        for record in await self.store.unpublished_checkpoints():
            await self._announce(record)

    async def _on_gap(self, expected: int, got: int, stop: asyncio.Event) -> None:
        """A sequence jump: a delivery hiccup (re-read), or a hole in the stream.

        A hole halts the writer: the chain never skips a sequence. It records the incident
        once, then re-checks now and then whether the message became readable again.
        """
        if await get_message(self.js, expected) is not None:
            raise _Restart()
        detail = (f"stream message {expected} cannot be read (next delivered: {got}); "
                  "the chain stops here rather than skip it")
        log.error("audit_stream_gap", expected=expected, got=got)
        await self.store.record_incident("stream_gap", expected, detail)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_GAP_RECHECK_S)
            if await get_message(self.js, expected) is not None:
                raise _Restart()

    async def _check_takeover(self, old_floor: int) -> bool:
        """Record evidence that stored links were removed; False if the stream is shorter
        than the chain (linking on would mix two histories)."""
        recorded = await self.store.recorded_head()
        evidence: dict[str, Any] = {}
        if old_floor > self.head.seq:
            evidence["consumer_ack_floor"] = old_floor
        if recorded is not None and recorded.seq > self.head.seq:
            evidence["recorded_head"] = recorded.seq
        if evidence:
            detail = (f"chain ends at {self.head.seq} but had reached "
                      + ", ".join(f"{k}={v}" for k, v in evidence.items())
                      + "; re-linking from the stream")
            log.error("audit_chain_rows_missing", head=self.head.seq, **evidence)
            await self.store.record_incident("chain_rows_missing", self.head.seq + 1, detail)
        _, stream_last = await stream_bounds(self.js)
        if stream_last >= self.head.seq:
            return True
        detail = (f"the stream ends at {stream_last} but the chain holds links up to "
                  f"{self.head.seq}; the writer stops until an operator intervenes")
        log.error("audit_stream_truncated", stream_last=stream_last, head=self.head.seq)
        await self.store.record_incident("stream_truncated", stream_last + 1, detail)
        return False

    async def _halt(self, stop: asyncio.Event) -> None:
        """Stay (holding the lock, so no standby links past the problem) until stopped."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_GAP_RECHECK_S)
            if not stop.is_set():
                log.error("audit_writer_halted", head=self.head.seq,
                          hint="see audit_incidents and run `mnemos audit verify --full`")
