"""The shared consumer runtime on its own, with a toy handler, against real NATS and Postgres:
the watchdog finds a consumer that stopped receiving while the stream grows and restarts it by
itself (issue 10, defect 4); a stop returns at once; a halt keeps the lock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from nats.js.errors import NotFoundError
from psycopg.rows import dict_row

from libs.consumer import ConsumerRuntime, ConsumerSettings, Delivery, Halt, Takeover
from libs.consumer.metrics import STALLS
from libs.consumer.stream import reread_if_still_served
from libs.events import EVENTS_STREAM, Unavailable
from libs.runtime.config import Config
from libs.runtime.nats_client import connect_nats
from services.projector.handler import ProjectionHandler, ProjectorSettings
from tests.support.events import CountingEmbedder, History, publish_all

pytestmark = pytest.mark.integration


class QuietHooks:
    """The handler hooks these toy consumers do nothing in."""

    async def idle(self, conn: Any) -> None:
        return None

    async def on_gap(self, conn: Any, expected: int, got: int) -> None:
        return None

    async def close(self) -> None:
        return None


class Tally(QuietHooks):
    """Counts deliveries into a table, with its checkpoint in the same transaction."""

    def __init__(self) -> None:
        self.halt_at: int | None = None
        self.starts = 0
        self.prepare_s = 0.0

    async def start(self, conn: Any, takeover: Takeover) -> int:
        self.starts += 1
        await conn.execute("CREATE TABLE IF NOT EXISTS tally (seq bigint PRIMARY KEY)")
        await conn.execute("CREATE TABLE IF NOT EXISTS tally_cp (id int PRIMARY KEY, seq bigint)")
        cur = await conn.execute("SELECT seq FROM tally_cp WHERE id = 1")
        row = await cur.fetchone()
        return int(row["seq"]) if row else 0

    async def prepare(self, deliveries: Sequence[Delivery]) -> None:
        await asyncio.sleep(self.prepare_s)  # e.g. embedding a batch on a busy machine

    async def apply(self, conn: Any, deliveries: Sequence[Delivery], prepared: None) -> int:
        if self.halt_at is not None and deliveries[-1].seq >= self.halt_at:
            raise Halt("told to halt")
        async with conn.transaction():
            for d in deliveries:
                await conn.execute("INSERT INTO tally (seq) VALUES (%s)", (d.seq,))
            await conn.execute("INSERT INTO tally_cp (id, seq) VALUES (1, %s) ON CONFLICT (id)"
                               " DO UPDATE SET seq = EXCLUDED.seq", (deliveries[-1].seq,))
        return deliveries[-1].seq


def _settings(config: Config, **overrides: Any) -> ConsumerSettings:
    url = config.database_url or ""

    async def connect() -> Any:
        return await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)

    values: dict[str, Any] = {"name": "tally", "role": "tally", "schema": "public",
                              "connect": connect, "batch_size": 10, "fetch_wait_s": 0.2,
                              "stall_after_s": 2.0, "halt_recheck_s": 0.5}
    values.update(overrides)
    return ConsumerSettings(**values)


async def _count(config: Config) -> int:
    async with await psycopg.AsyncConnection.connect(config.database_url or "") as conn:
        try:
            cur = await conn.execute("SELECT count(*) FROM tally")
        except psycopg.errors.UndefinedTable:
            return 0
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def _wait_count(config: Config, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await _count(config) < n:
        assert time.monotonic() < deadline, f"only {await _count(config)} of {n} applied"
        await asyncio.sleep(0.1)


async def test_the_watchdog_restarts_a_consumer_that_stopped_receiving(config: Config,
                                                                      nats_js: Any) -> None:
    h = History()
    nc = await connect_nats(config.nats_url or "", "tests-runtime")
    stop = asyncio.Event()
    handler = Tally()
    runtime = ConsumerRuntime(_settings(config), handler, nc)
    task = asyncio.create_task(runtime.run(stop))
    stalls_before = STALLS.labels("tally", "public")._value.get()
    try:
        await publish_all(nats_js, [h.created(f"a{i}") for i in range(15)])
        await _wait_count(config, 15, 20)
        # The server forgets the consumer: pulls now end empty while the stream grows.
        for _ in range(50):
            try:
                await nats_js.delete_consumer(EVENTS_STREAM, "tally")
                break
            except NotFoundError:
                await asyncio.sleep(0.05)
        await publish_all(nats_js, [h.created(f"b{i}") for i in range(15)])
        await _wait_count(config, 30, 30)
        assert STALLS.labels("tally", "public")._value.get() >= stalls_before + 1
        assert handler.starts >= 2
        stopped_at = time.monotonic()
        stop.set()
        assert await asyncio.wait_for(task, 5) == 30
        assert time.monotonic() - stopped_at < 2.0
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()


async def test_a_slow_batch_is_not_a_stall(config: Config, nats_js: Any) -> None:
    """A batch whose preparation outlasts stall_after_s is working, not stuck: restarting it
    would redo the same work forever (seen: embeddings under load, checkpoint never moving)."""
    h = History()
    nc = await connect_nats(config.nats_url or "", "tests-runtime")
    stop = asyncio.Event()
    handler = Tally()
    handler.prepare_s = 3.0  # > stall_after_s = 2.0, for every batch
    runtime = ConsumerRuntime(_settings(config), handler, nc)
    task = asyncio.create_task(runtime.run(stop))
    stalls_before = STALLS.labels("tally", "public")._value.get()
    try:
        await publish_all(nats_js, [h.created(f"slow{i}") for i in range(25)])
        await _wait_count(config, 25, 40)
        assert STALLS.labels("tally", "public")._value.get() == stalls_before
        assert handler.starts == 1
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()


async def test_a_halt_keeps_the_lock_and_is_retried(config: Config, nats_js: Any) -> None:
    h = History()
    nc = await connect_nats(config.nats_url or "", "tests-runtime")
    stop = asyncio.Event()
    first, second = Tally(), Tally()
    first.halt_at = 1
    leader = ConsumerRuntime(_settings(config), first, nc)
    standby = ConsumerRuntime(_settings(config), second, nc)
    tasks = [asyncio.create_task(leader.run(stop))]
    await asyncio.sleep(0.5)
    tasks.append(asyncio.create_task(standby.run(stop)))
    try:
        await publish_all(nats_js, [h.created(f"c{i}") for i in range(5)])
        await asyncio.sleep(2.0)
        assert await _count(config) == 0 and second.starts == 0  # halted, lock still held
        first.halt_at = None
        await _wait_count(config, 5, 20)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await nc.close()



class SharedTally(Tally):
    """Idempotent per message (a shared consumer may see a message again after a crash)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    async def apply(self, conn: Any, deliveries: Sequence[Delivery], prepared: None) -> int:
        async with conn.transaction():
            for d in deliveries:
                await conn.execute("INSERT INTO tally (seq) VALUES (%s) ON CONFLICT DO NOTHING",
                                   (d.seq,))
        self.seen.extend(d.seq for d in deliveries)
        return deliveries[-1].seq


async def test_shared_instances_split_the_work_and_lose_none(config: Config,
                                                             nats_js: Any) -> None:
    h = History()
    nc = await connect_nats(config.nats_url or "", "tests-runtime")
    stop = asyncio.Event()
    workers = [SharedTally(), SharedTally()]
    settings = _settings(config, name="shared_tally", shared=True, batch_size=3)
    async with await psycopg.AsyncConnection.connect(config.database_url or "",
                                                     autocommit=True, row_factory=dict_row) as c:
        await Tally().start(c, Takeover(0))  # the tables, before two starts race to make them
    tasks = [asyncio.create_task(ConsumerRuntime(settings, w, nc).run(stop)) for w in workers]
    try:
        await publish_all(nats_js, [h.created(f"s{i}") for i in range(40)])
        await _wait_count(config, 40, 30)
        assert all(w.seen for w in workers), "one instance did all the work"
        assert sorted(workers[0].seen + workers[1].seen) == list(range(1, 41))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await nc.close()


async def test_an_idle_pull_returns_at_the_first_event(config: Config, nats_js: Any) -> None:
    """A lingering pull answers as soon as one event arrives, not when a full batch has
    accumulated or its wait expired (a trickle of writes would otherwise wait ``wait_s`` each:
    projection lag at 50 cmd/s went from ~10 ms to ~570 ms in bench_spine)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from libs.consumer.stream import BatchPuller

    nc = await connect_nats(config.nats_url or "", "tests-puller")
    try:
        js = nc.jetstream()
        last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
            durable_name="trickle", ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1))
        puller = BatchPuller(nc, EVENTS_STREAM, "trickle")
        pulling = asyncio.create_task(puller.pull(256, 30.0))
        await asyncio.sleep(0.5)
        began = time.monotonic()
        await publish_all(nats_js, [History().created("one event")])
        msgs = await asyncio.wait_for(pulling, 20.0)  # well under the 30 s wait
        assert len(msgs) == 1 and time.monotonic() - began < 20.0
        await publish_all(nats_js, [History().created(f"ready {n}") for n in range(3)])
        assert len(await puller.pull(256, 30.0)) == 3  # ready ones come together, at once
        await puller.close()
    finally:
        await nc.drain()


class BoundedTally(QuietHooks):
    """Remembers what it prepared and applied, in memory, from a given checkpoint."""

    def __init__(self, checkpoint: int) -> None:
        self.checkpoint = checkpoint
        self.applied: list[int] = []
        self.prepared: list[int] = []
        self.prepared_ahead = 0

    async def start(self, conn: Any, takeover: Takeover) -> int:
        return self.checkpoint

    async def prepare(self, deliveries: Sequence[Delivery]) -> None:
        self.prepared.extend(d.seq for d in deliveries)

    async def apply(self, conn: Any, deliveries: Sequence[Delivery], prepared: None) -> int:
        if self.prepared and self.prepared[-1] > deliveries[-1].seq:
            self.prepared_ahead += 1  # the next batch was in hand before this one was written
        self.applied.extend(d.seq for d in deliveries)
        self.checkpoint = deliveries[-1].seq
        return self.checkpoint


async def test_a_bounded_run_prepares_ahead_and_stops_at_its_end(config: Config,
                                                                 nats_js: Any) -> None:
    """A replay's bounded run stages the next batches while one is applied (as the live
    consumer does), yet never pulls past its end: a second run continues from exactly there."""
    base = (await nats_js.stream_info(EVENTS_STREAM)).state.last_seq
    h = History()
    await publish_all(nats_js, [h.created(f"bounded {i}") for i in range(45)])
    nc = await connect_nats(config.nats_url or "", "tests-runtime")
    try:
        settings = _settings(config, name="bounded_tally", batch_size=10, ahead=2)
        handler = BoundedTally(base)
        first = await asyncio.wait_for(
            ConsumerRuntime(settings, handler, nc).run(asyncio.Event(), until_seq=base + 23), 30)
        assert first == base + 23
        assert handler.applied == list(range(base + 1, base + 24))
        assert handler.prepared_ahead >= 1, "no batch was prepared while another was applied"
        assert max(handler.prepared) == base + 23, "a batch past the end was pulled"
        second = await asyncio.wait_for(
            ConsumerRuntime(settings, handler, nc).run(asyncio.Event(), until_seq=base + 45), 30)
        assert second == base + 45
        assert handler.applied == list(range(base + 1, base + 46))
    finally:
        await nc.close()


async def test_a_skipped_delivery_of_a_message_still_served_is_read_again(
    config: Config, nats_js: Any
) -> None:
    """A sequence jump whose missing message the stream still holds is a delivery hiccup (a
    pull request abandoned, its deliveries sent to an inbox nobody reads): the projector, the
    auditor and the registry follower raise a transient error and read again from their
    checkpoint instead of projecting on without it. A message the stream no longer has (a
    real hole, left by the stream's limits) is passed over by the projector as before."""
    h = History()
    last = await publish_all(nats_js, [h.created(f"gap {i}") for i in range(3)])
    first = last - 2
    with pytest.raises(Unavailable, match=f"delivery skipped {first}"):
        await reread_if_still_served(nats_js, first, last)
    handler = ProjectionHandler(ProjectorSettings(database_url=config.database_url or "",
                                                  schema=config.db_schema), nats_js,
                                CountingEmbedder())
    with pytest.raises(Unavailable):
        await handler.on_gap(None, first + 1, last)  # type: ignore[arg-type]
    # The stream refuses deletes; a sequence it does not serve stands for a hole left by its
    # limits: nothing to read again, the projector goes on.
    await reread_if_still_served(nats_js, last + 7, last + 9)
    await handler.on_gap(None, last + 7, last + 9)  # type: ignore[arg-type]
