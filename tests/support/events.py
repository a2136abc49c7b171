"""Helpers of the projector tests: valid event histories, publishing, running, waiting.

No tests here; the module is named for the projector tests' area.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from libs.consumer import Delivery
from libs.embeddings import Embedder, MiniLMOnnxEmbedder
from libs.events import (
    Actor,
    EventBase,
    MemoryCreated,
    MemoryCreatedData,
    MemoryForgotten,
    MemoryForgottenData,
    MemoryLinked,
    MemoryLinkedData,
    MemoryMetadataChanged,
    MemoryMetadataChangedData,
    MemoryRevised,
    MemoryRevisedData,
    MemoryTagged,
    MemoryTaggedData,
    MetadataValue,
    Provenance,
    ThreadRef,
    content_hash,
    derive_event_id,
    encode_event,
    event_subject,
    new_command_id,
    new_memory_id,
    version_id,
)
from libs.runtime.config import Config
from libs.runtime.database import connect_async
from services.projector.batch import BatchApplier
from services.projector.decoding import decode_batch
from services.projector.main import run

ACTOR = Actor(principal="alice", agent_id="planner", model="m-1", provider="p")
EPOCH = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class History:
    """Builds valid events for memories of one namespace (heads tracked like the gateway)."""

    def __init__(self, ns: str = "team-a") -> None:
        self.ns = ns
        self.heads: dict[str, str] = {}
        self.count = 0

    def _envelope(self, memory_id: str) -> dict[str, Any]:
        command_id = new_command_id()
        self.count += 1
        return {
            "id": derive_event_id(self.ns, command_id), "ns": self.ns, "aggregate": "memory",
            "aggregate_id": memory_id, "actor": ACTOR, "command_id": command_id,
            "correlation_id": command_id, "at": self.now(),
        }

    def now(self) -> datetime:
        """The recording time of the latest envelope (one millisecond per event)."""
        return EPOCH + timedelta(milliseconds=self.count)

    def created(self, content: str, *, memory_id: str | None = None, kind: str = "note",
                tags: Sequence[str] = (), metadata: dict[str, MetadataValue] | None = None,
                source: str | None = None, occurred_at: datetime | None = None,
                thread: ThreadRef | None = None) -> MemoryCreated:
        memory_id = memory_id or new_memory_id()
        digest = content_hash(content)
        meta = metadata or {}
        version = version_id(memory_id, digest, meta, [])
        self.heads[memory_id] = version
        envelope = self._envelope(memory_id)
        return MemoryCreated(
            schema=MemoryCreated.SCHEMA, **envelope,
            data=MemoryCreatedData(memory_id=memory_id, version_id=version, kind=kind,
                                   content=content, content_hash=digest, tags=tuple(tags),
                                   metadata=meta, provenance=Provenance(source=source),
                                   occurred_at=occurred_at or envelope["at"], thread=thread),
        )

    def revised(self, memory_id: str, content: str, *,
                metadata: dict[str, MetadataValue] | None = None, reason: str | None = None,
                parent: str | None = None) -> MemoryRevised:
        digest = content_hash(content)
        meta = metadata or {}
        parent = parent or self.heads.get(memory_id, "0" * 32)
        version = version_id(memory_id, digest, meta, [parent])
        self.heads[memory_id] = version
        return MemoryRevised(
            schema=MemoryRevised.SCHEMA, **self._envelope(memory_id),
            data=MemoryRevisedData(version_id=version, parent_version_id=parent,
                                   content=content, content_hash=digest, metadata=meta,
                                   reason=reason),
        )

    def tagged(self, memory_id: str, added: Sequence[str] = (), removed: Sequence[str] = ()
               ) -> MemoryTagged:
        return MemoryTagged(schema=1, **self._envelope(memory_id),
                            data=MemoryTaggedData(added=tuple(added), removed=tuple(removed)))

    def metadata_changed(self, memory_id: str, set_: dict[str, MetadataValue],
                         unset: Sequence[str] = ()) -> MemoryMetadataChanged:
        return MemoryMetadataChanged(
            schema=1, **self._envelope(memory_id),
            data=MemoryMetadataChangedData(set=set_, unset=tuple(unset)),
        )

    def linked(self, memory_id: str, target: str, relation: str = "related") -> MemoryLinked:
        return MemoryLinked(schema=1, **self._envelope(memory_id),
                            data=MemoryLinkedData(target_memory_id=target, relation=relation))

    def forgotten(self, memory_id: str, reason: str) -> MemoryForgotten:
        return MemoryForgotten(schema=1, **self._envelope(memory_id),
                               data=MemoryForgottenData(reason=reason))


async def publish(js: Any, event: EventBase) -> int:
    """Append ``event`` on its subject the way the gateway does; its stream sequence."""
    ack = await js.publish(event_subject(event.ns, event.aggregate, event.aggregate_id),
                           encode_event(event), headers={"Nats-Msg-Id": event.id})
    return int(ack.seq)


async def publish_all(js: Any, events: Sequence[EventBase]) -> int:
    """Publish in order; the last sequence."""
    seq = 0
    for event in events:
        seq = await publish(js, event)
    return seq


async def checkpoint(url: str, schema: str = "mnemos") -> int:
    """The projector's checkpoint (0 if none yet or the schema does not exist yet)."""
    try:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute(
                f"SELECT last_seq FROM {schema}.projection_checkpoints WHERE name = 'read_models'",
                prepare=False,
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0
    except psycopg.errors.UndefinedTable:
        return 0


async def wait_checkpoint(url: str, seq: int, timeout_s: float = 30.0, schema: str = "mnemos"
                          ) -> None:
    """Wait until the checkpoint reaches ``seq``."""
    deadline = time.monotonic() + timeout_s
    while (current := await checkpoint(url, schema)) < seq:
        if time.monotonic() > deadline:
            raise AssertionError(f"checkpoint {current} did not reach {seq} in {timeout_s}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_projector(config: Config, **kwargs: Any) -> AsyncIterator[asyncio.Task[None]]:
    """The projector service running in this process (stopped cleanly on exit)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(config, stop, **kwargs))
    try:
        yield task
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=30)
        assert done, "the projector did not stop within 30 s"
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


@contextlib.asynccontextmanager
async def read_models(url: str, schema: str = "mnemos"
                      ) -> AsyncIterator[psycopg.AsyncConnection[dict[str, object]]]:
    """An autocommit connection to the read models."""
    conn = await connect_async(url, schema, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def rows(conn: psycopg.AsyncConnection[dict[str, object]], query: str,
               params: Sequence[object] = ()) -> list[dict[str, Any]]:
    """Ground-truth rows (never a prepared statement)."""
    cur = await conn.execute(query.encode(), params, prepare=False)
    return [dict(row) for row in await cur.fetchall()]


class CountingEmbedder:
    """The real MiniLM embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner: Embedder = MiniLMOnnxEmbedder.shared()
        self.texts: list[str] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.texts.extend(texts)
        return self.inner.embed(texts)


@dataclass
class SkipAndApply:
    """What applying a batch as the consumer runtime does gives: the deliveries at or below the
    checkpoint skipped (redeliveries), the rest applied in one transaction."""

    skipped: int
    applied: int
    last_seq: int


async def apply_above_checkpoint(applier: BatchApplier, deliveries: Sequence[Delivery],
                                 checkpoint: int) -> SkipAndApply:
    """Skip the redelivered part of ``deliveries`` and apply the rest, as the runtime does."""
    fresh = [d for d in deliveries if d.seq > checkpoint]
    if not fresh:
        return SkipAndApply(len(deliveries), 0, checkpoint)
    outcome = await applier.apply(decode_batch(fresh), {})
    return SkipAndApply(len(deliveries) - len(fresh), outcome.applied, outcome.last_seq)
