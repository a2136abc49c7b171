"""Faults: the projector loses its Postgres connection, or the broker restarts, mid-stream.

Both are transient: the batch in flight rolls back unacknowledged, the projector reconnects with
back-off (re-taking its lock and resuming at checkpoint + 1), and every event still lands once.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from libs.consumer.metrics import TRANSIENT_ERRORS
from libs.events import EventBase
from libs.readmodel.digest import row_counts
from libs.runtime.config import Config
from libs.runtime.nats_server import NatsServer
from tests.support.events import (
    History,
    publish,
    read_models,
    rows,
    running_projector,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration

MEMORIES = 40
REVISIONS = 4


async def _terminate_projector_backends(url: str) -> int:
    """Kill the projector's server process(es) once it is connected (it may be backing off)."""
    seen = _transient_errors()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(200):
            cur = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name LIKE 'mnemos-projector-%'", prepare=False,
            )
            row = await cur.fetchone()
            if row and row[0]:
                await _noticed(seen)
                return int(row[0])
            await asyncio.sleep(0.05)
    return 0


async def _noticed(before: float, timeout_s: float = 15.0) -> None:
    """Wait until the projector has hit the cut connection and is reconnecting, so the next cut
    lands in a new session (one session may hold its leader connection idle while it embeds)."""
    for _ in range(int(timeout_s / 0.05)):
        if _transient_errors() > before:
            return
        await asyncio.sleep(0.05)


async def _assert_exactly_once(url: str) -> None:
    async with read_models(url) as conn:
        counts = await row_counts(conn)
        assert counts["memory_events"] == MEMORIES * (REVISIONS + 1)
        assert counts["memory_versions"] == MEMORIES * (REVISIONS + 1)
        assert counts["dead_letters"] == 0
        assert await rows(conn, "SELECT DISTINCT version_count FROM memories") == [
            {"version_count": REVISIONS + 1}]


def _rounds(h: History) -> list[list[EventBase]]:
    created = [h.created(f"n{i} v0") for i in range(MEMORIES)]
    rounds: list[list[EventBase]] = [list(created)]
    for step in range(REVISIONS):
        rounds.append([h.revised(e.aggregate_id, f"n{i} v{step + 1}")
                       for i, e in enumerate(created)])
    return rounds


def _transient_errors() -> float:
    return TRANSIENT_ERRORS.labels("projector", "mnemos")._value.get()  # type: ignore[no-any-return]


async def test_lost_database_connections_are_survived(config: Config, nats_js) -> None:
    url = config.database_url or ""
    before = _transient_errors()
    last = 0
    async with running_projector(config):
        for index, batch in enumerate(_rounds(History())):
            last = max(await asyncio.gather(*(publish(nats_js, e) for e in batch)))
            if index in (1, 3):
                await asyncio.sleep(0.05)  # let it pick the round up, then cut it off
                assert await _terminate_projector_backends(url) >= 1
        await wait_checkpoint(url, last, timeout_s=30)
    assert _transient_errors() >= before + 2
    await _assert_exactly_once(url)


async def test_a_broker_restart_is_survived(config: Config, nats_js, nats_server: NatsServer
                                            ) -> None:
    url = config.database_url or ""
    rounds = _rounds(History())
    async with running_projector(config):
        last = max(await asyncio.gather(*(publish(nats_js, e) for e in rounds[0])))
        await wait_checkpoint(url, last)
        nats_server.kill()
        await asyncio.sleep(0.5)
        nats_server.start()
        for batch in rounds[1:]:
            last = max(await asyncio.gather(*(publish(nats_js, e) for e in batch)))
        await wait_checkpoint(url, last, timeout_s=30)
    await _assert_exactly_once(url)
