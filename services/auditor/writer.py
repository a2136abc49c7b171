"""The chain writer on the shared consumer runtime: link every message, sign checkpoints.

One batch = one transaction (rows + head + optional checkpoint), then the runtime's cumulative
ack. The chain never skips a sequence: a hole in the stream halts the writer (it records the
incident once and keeps its lock, so no standby links past it either) until the message is
readable again; a stream shorter than the chain halts it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.consumer import ConsumerRuntime, ConsumerSettings, Delivery, Halt, Takeover
from libs.consumer.stream import reread_if_still_served, stream_bounds
from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from services.auditor.chain import Head, extend
from services.auditor.checkpoint import checkpoint_due, format_at, sign_checkpoint
from services.auditor.files import checkpoint_dir, write_checkpoint_file
from services.auditor.metrics import (
    CHAIN_HEAD,
    CHECKPOINTS_SIGNED,
    INCIDENTS,
    LAST_VERIFICATION_OK,
    LAST_VERIFICATION_TIME,
)
from services.auditor.store import ChainStore, CheckpointRecord, Conn, connect
from services.auditor.streamio import CHECKPOINT_SUBJECT, checkpoint_record, publish_checkpoint

__all__ = ["BATCH", "CONSUMER", "ChainWriter", "auditor_runtime"]

log = get_logger(__name__)

CONSUMER: Final = "auditor"
"""Durable consumer (and leadership role) of the chain writer."""
BATCH: Final = 5000
"""Messages per fetch and per transaction."""
VERIFICATION_REFRESH_S: Final = 5.0
"""How often the active auditor re-reads the newest verification for its metrics."""


@dataclass
class _CheckpointClock:
    seq: int
    at: float
    new_events: int


class ChainWriter:
    """Extends the chain (see :class:`libs.consumer.ConsumerHandler`)."""

    def __init__(self, config: Config, js: Any, key: Ed25519PrivateKey) -> None:
        self.config = config
        self.js = js
        self.key = key
        self.store: ChainStore | None = None
        self.head = Head(0, b"")
        self.clock = _CheckpointClock(0, time.monotonic(), 0)
        self._incident: tuple[str, int] | None = None
        self._verification_read_at = 0.0

    async def start(self, conn: Conn, takeover: Takeover) -> int:
        store = self.store = ChainStore(conn)
        await store.ensure_genesis()
        self.head = await store.tail()
        CHAIN_HEAD.set(self.head.seq)
        await self._export_verification(force=True)
        for record in await store.unpublished_checkpoints():
            await self._announce(record)
        last = await store.last_checkpoint()
        last_seq = last.checkpoint.seq if last else 0
        # Unsigned links from before a restart count as news for the time-based checkpoint.
        self.clock = _CheckpointClock(last_seq, time.monotonic(),
                                      1 if self.head.seq > last_seq else 0)
        await self._check_takeover(takeover.previous_ack_floor)
        log.info("auditor_extending", head=self.head.seq)
        return self.head.seq

    async def _export_verification(self, force: bool = False) -> None:
        """Export the newest recorded verification, whoever ran it (this process, another
        auditor, ``mnemos audit verify``): at start, then at most every few seconds."""
        now = time.monotonic()
        if self.store is None or (not force and now - self._verification_read_at
                                  < VERIFICATION_REFRESH_S):
            return
        self._verification_read_at = now
        latest = await self.store.latest_verification()
        if latest is not None:
            LAST_VERIFICATION_OK.set(1 if latest[0] else 0)
            LAST_VERIFICATION_TIME.set(latest[1])

    async def prepare(self, deliveries: Sequence[Delivery]) -> None:
        return None

    async def apply(self, conn: Conn, deliveries: Sequence[Delivery], prepared: None) -> int:
        ext = extend(self.head, ((d.seq, d.data) for d in deliveries))
        self.clock.new_events += sum(1 for d in deliveries if self.head.seq < d.seq <= ext.head.seq
                                     and d.subject != CHECKPOINT_SUBJECT)
        await self._commit(ext.rows, ext.head)
        self._incident = None
        await self._export_verification()
        return self.head.seq

    async def idle(self, conn: Conn) -> None:
        await self._commit([], self.head)  # a time-based checkpoint may be due
        await self._export_verification()

    async def _commit(self, rows: Sequence[Any], head: Head) -> None:
        assert self.store is not None
        record = self._checkpoint_if_due(head)
        if rows or record is not None:
            await self.store.append(rows, head, record)
            self.head = head
            CHAIN_HEAD.set(head.seq)
        if record is not None:
            self.clock = _CheckpointClock(record.checkpoint.seq, time.monotonic(), 0)
            await self._announce(record)

    def _checkpoint_if_due(self, head: Head) -> CheckpointRecord | None:
        now = time.monotonic()
        if not checkpoint_due(head.seq, self.clock.seq, now - self.clock.at,
                              self.clock.new_events, self.config.audit_checkpoint_events,
                              self.config.audit_checkpoint_interval_s):
            return None
        at = format_at(datetime.now(UTC))
        return checkpoint_record(sign_checkpoint(self.key, head.seq, head.link, at))

    async def _announce(self, record: CheckpointRecord) -> None:
        """After commit: the operator's file, then the stream event (idempotent on retry)."""
        assert self.store is not None
        path = await asyncio.to_thread(write_checkpoint_file, checkpoint_dir(self.config),
                                       record.checkpoint)
        published = await publish_checkpoint(self.js, record)
        await self.store.mark_published(record.checkpoint.seq, published)
        CHECKPOINTS_SIGNED.inc()
        log.info("audit_checkpoint_signed", seq=record.checkpoint.seq, link=record.checkpoint.link,
                 file=str(path), event_seq=published)

    async def on_gap(self, conn: Conn, expected: int, got: int) -> None:
        """A sequence jump: a delivery hiccup (read again), or a hole in the stream (halt)."""
        await reread_if_still_served(self.js, expected, got)
        await self._incident_once("stream_gap", expected,
                                  f"stream message {expected} cannot be read (next delivered: "
                                  f"{got}); the chain stops here rather than skip it")
        raise Halt(f"stream message {expected} cannot be read")

    async def _incident_once(self, kind: str, seq: int, detail: str) -> None:
        assert self.store is not None
        if self._incident == (kind, seq):
            return
        log.error(f"audit_{kind}", seq=seq, detail=detail)
        await self.store.record_incident(kind, seq, detail)
        INCIDENTS.labels(kind).inc()
        self._incident = (kind, seq)

    async def _check_takeover(self, old_floor: int) -> None:
        """Record evidence that stored links were removed; halt if the stream is shorter than
        the chain (linking on would mix two histories)."""
        assert self.store is not None
        recorded = await self.store.recorded_head()
        evidence: dict[str, Any] = {}
        if old_floor > self.head.seq:
            evidence["consumer_ack_floor"] = old_floor
        if recorded is not None and recorded.seq > self.head.seq:
            evidence["recorded_head"] = recorded.seq
        if evidence:
            await self._incident_once(
                "chain_rows_missing", self.head.seq + 1,
                f"chain ends at {self.head.seq} but had reached "
                + ", ".join(f"{k}={v}" for k, v in evidence.items())
                + "; re-linking from the stream")
        _, stream_last = await stream_bounds(self.js)
        if stream_last < self.head.seq:
            await self._incident_once(
                "stream_truncated", stream_last + 1,
                f"the stream ends at {stream_last} but the chain holds links up to "
                f"{self.head.seq}; the writer stops until an operator intervenes")
            raise Halt("the stream is shorter than the chain; see audit_incidents and run "
                       "`mnemos audit verify --full`")

    async def close(self) -> None:
        self.store = None


def auditor_runtime(config: Config, nc: Any, key: Ed25519PrivateKey,
                    batch: int = BATCH) -> ConsumerRuntime[None]:
    """The chain writer as a consumer-runtime instance."""
    assert config.database_url is not None
    url = config.database_url

    async def connect_writer() -> Conn:
        return await connect(url, config.db_schema)

    settings = ConsumerSettings(name=CONSUMER, role="auditor", schema=config.db_schema,
                                connect=connect_writer, batch_size=batch, ahead=1,
                                fetch_wait_s=0.5, max_ack_pending=2 * batch)
    return ConsumerRuntime(settings, ChainWriter(config, nc.jetstream(), key), nc)
