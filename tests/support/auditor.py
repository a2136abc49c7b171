"""Helpers of the auditor tests and benchmark: realistic events, a running auditor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from libs.events import (
    EVENTS_STREAM,
    HDR_MSG_ID,
    Actor,
    MemoryCreated,
    MemoryCreatedData,
    content_hash,
    derive_event_id,
    encode_event,
    event_subject,
    new_command_id,
    new_memory_id,
    version_id,
)
from libs.runtime.config import Config
from services.auditor.store import audit_schema


def memory_created(ns: str, index: int, command_id: str | None = None,
                   content: str | None = None) -> MemoryCreated:
    """A realistic ``MemoryCreated`` event (content-addressed ids computed as the gateway does)."""
    command_id = command_id or new_command_id()
    memory_id = new_memory_id()
    if content is None:
        content = f"Memory {index}: the user prefers dark mode and answers in short sentences."
    digest = content_hash(content)
    metadata: dict[str, str | int | float | bool | None] = {"i": index}
    return MemoryCreated(
        id=derive_event_id(ns, command_id, index), schema=MemoryCreated.SCHEMA, ns=ns,
        aggregate="memory", aggregate_id=memory_id,
        actor=Actor(principal="tester", agent_id="agent-1", model="m", provider="p"),
        command_id=command_id, correlation_id=command_id, at=datetime.now(UTC),
        data=MemoryCreatedData(
            memory_id=memory_id, version_id=version_id(memory_id, digest, metadata, []),
            kind="note", content=content, content_hash=digest, tags=("t",), metadata=metadata,
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC)),
    )


async def publish_events(js: Any, count: int, ns: str = "tests") -> list[tuple[int, MemoryCreated]]:
    """Append ``count`` events with acknowledged publishes; return ``(seq, event)`` pairs."""
    command_id = new_command_id()
    out = []
    for i in range(count):
        event = memory_created(ns, i, command_id)
        ack = await js.publish(event_subject(ns, "memory", event.aggregate_id),
                               encode_event(event), headers={HDR_MSG_ID: event.id})
        out.append((int(ack.seq), event))
    return out


async def bulk_publish(nc: Any, js: Any, count: int, ns: str = "bench",
                       progress: Any = None, window: int = 4000,
                       content_of: Callable[[int], str] | None = None) -> None:
    """Append many events fast: publishes with up to ``window`` acknowledgements outstanding.

    Flow control matters: unacknowledged core publishes beyond the server's ingest rate are
    dropped by JetStream ("excessive stream ingest rate").
    """
    command_id = new_command_id()
    start = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    inbox = nc.new_inbox()
    acked = 0
    room = asyncio.Event()

    async def on_ack(_msg: Any) -> None:
        nonlocal acked
        acked += 1
        room.set()

    sub = await nc.subscribe(inbox, cb=on_ack)
    for i in range(count):
        while i - acked >= window:
            room.clear()
            await room.wait()
        content = content_of(i) if content_of is not None else None
        event = memory_created(ns, i, command_id, content)
        await nc.publish(event_subject(ns, "memory", event.aggregate_id), encode_event(event),
                         reply=inbox, headers={HDR_MSG_ID: event.id})
        if progress is not None and i % 100_000 == 99_999:
            progress(i + 1)
    while acked < count:
        room.clear()
        await room.wait()
    await sub.unsubscribe()
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    if last != start + count:
        raise RuntimeError(f"stream holds {last - start} of {count} published events")


@contextlib.asynccontextmanager
async def running_auditor(config: Config) -> AsyncIterator[asyncio.Task[None]]:
    """Run the auditor service as a task for the duration of the block."""
    from services.auditor.main import run

    stop = asyncio.Event()
    task = asyncio.create_task(run(config, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def db(config: Config, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
    """A tuple-row connection seeing the audit tables, then the read models (as the auditor)."""
    assert config.database_url is not None
    path = f"-c search_path={audit_schema(config.db_schema)},{config.db_schema},public"
    return psycopg.connect(config.database_url, options=path, autocommit=autocommit)


def chain_head(config: Config) -> int:
    """The stored chain tail (0 if the auditor has not created its tables yet)."""
    try:
        with db(config) as conn:
            row = conn.execute("SELECT max(seq) FROM audit_chain").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0] or 0) if row else 0


async def wait_for_head(config: Config, seq: int, timeout_s: float = 60.0) -> None:
    """Block until the chain has linked ``seq``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(chain_head, config) >= seq:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"chain did not reach {seq} (at {chain_head(config)})")


def audit_cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``mnemos audit <args>`` as an operator would, against ``config``'s servers."""
    env = {**os.environ, "MNEMOS_NATS_URL": str(config.nats_url),
           "MNEMOS_DATABASE_URL": str(config.database_url), "MNEMOS_HOME": str(config.home),
           "MNEMOS_DB_SCHEMA": config.db_schema, "MNEMOS_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "mnemos", "audit", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
