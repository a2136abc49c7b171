"""The projector's embed-ahead pipeline: several batches embedding while one is written."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from libs.events import EventBase
from libs.readmodel.digest import read_model_digest, row_counts
from libs.readmodel.schema import prepare_schema
from libs.runtime.config import Config
from libs.runtime.nats_client import connect_nats
from services.projector.handler import ProjectorSettings, projector_runtime
from tests.support.events import (
    CountingEmbedder,
    History,
    publish_all,
    read_models,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration


class SlowEmbedder(CountingEmbedder):
    """The real embedder, slowed so batches overlap, recording how many calls ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._running = 0
        self.most_at_once = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        try:
            time.sleep(0.05)
            return super().embed(texts)
        finally:
            with self._lock:
                self._running -= 1


def _backlog(h: History) -> list[EventBase]:
    """Creations and revisions of the same memories, interleaved across many small batches, so
    applying any batch out of order would leave a different head version."""
    created = [h.created(f"pipelined fact {i}", tags=("p",)) for i in range(12)]
    events: list[EventBase] = []
    for i, event in enumerate(created):
        events.append(event)
        if i >= 2:
            events.append(h.revised(created[i - 2].aggregate_id, f"pipelined fact {i - 2}, v2"))
    events.append(h.revised(created[0].aggregate_id, "pipelined fact 0, v3"))
    return events


async def _project(config: Config, schema: str, consumer: str, settings: dict[str, Any],
                   embedder: CountingEmbedder, last: int) -> None:
    url = config.database_url or ""
    prepare_schema(url, schema, embedder.dim)
    nc = await connect_nats(config.nats_url or "", f"test-{consumer}")
    stop = asyncio.Event()
    projector = projector_runtime(
        ProjectorSettings(database_url=url, schema=schema, consumer=consumer,
                          publish_dead_letters=False, fenced=False, **settings),
        nc, embedder)
    task = asyncio.create_task(projector.run(stop))
    try:
        await wait_checkpoint(url, last, schema=schema)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nc.close()


async def test_batches_embedded_ahead_apply_in_order_exactly_once(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    events = _backlog(History())
    last = await publish_all(nats_js, events)  # a backlog before the projector starts

    slow = SlowEmbedder()
    await _project(config, "pipelined", "pipelined", {"batch_size": 3, "embed_ahead": 2},
                   slow, last)
    await _project(config, "one_batch", "one_batch", {"batch_size": 256, "embed_ahead": 0},
                   CountingEmbedder(), last)

    assert slow.most_at_once >= 2  # later batches were embedding while earlier ones wrote
    texts = {f"pipelined fact {i}" for i in range(12)} | {
        f"pipelined fact {i}, v2" for i in range(10)} | {"pipelined fact 0, v3"}
    assert sorted(slow.texts) == sorted(texts)  # each text embedded once
    async with read_models(url, "pipelined") as pipelined, \
            read_models(url, "one_batch") as one_batch:
        counts = await row_counts(pipelined)
        assert counts["memory_events"] == len(events) and counts["memories"] == 12
        assert await read_model_digest(pipelined) == await read_model_digest(one_batch)


def _mixed(h: History) -> list[EventBase]:
    """Runs of every memory event type, long enough for COPY, with a few that must fail."""
    created = [h.created(f"copied fact {i}", tags=("c",), metadata={"i": i}) for i in range(20)]
    ids = [e.aggregate_id for e in created]
    return [
        *created,
        *[h.revised(m, f"copied fact {i}, revised") for i, m in enumerate(ids)],
        *[h.tagged(m, added=("x",), removed=("c",)) for m in ids],
        *[h.metadata_changed(m, {"j": 1}, ()) for m in ids],
        *[h.linked(m, ids[(i + 1) % 20]) for i, m in enumerate(ids)],
        h.tagged("missing-memory", added=("y",)),  # poison inside nothing: a dead letter
        *[h.forgotten(m, "done") for m in ids[:10]],
        *[h.created(f"late fact {i}") for i in range(5)],
    ]


async def test_copy_runs_project_what_statements_project(config: Config, nats_js) -> None:
    url = config.database_url or ""
    events = _mixed(History())
    last = await publish_all(nats_js, events)
    await _project(config, "by_statement", "by_statement", {"copy_min_run": None},
                   CountingEmbedder(), last)
    await _project(config, "by_copy", "by_copy", {"copy_min_run": 2}, CountingEmbedder(), last)
    async with read_models(url, "by_statement") as by_statement, \
            read_models(url, "by_copy") as by_copy:
        counts = await row_counts(by_copy)
        assert counts["memories"] == 25 and counts["memory_links"] == 20
        assert counts["dead_letters"] == 1
        assert counts == await row_counts(by_statement)
        assert await read_model_digest(by_copy) == await read_model_digest(by_statement)
