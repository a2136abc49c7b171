"""Fault: the projector process is SIGKILLed mid-stream, twice, while events keep arriving.

Two real ``mnemos serve projector`` processes run (leader + hot standby). Killing the leader
hands over to the standby; the killed one is restarted as the new standby. In the end every
event must be projected exactly once, and the read models must equal (by digest) those of one
clean, uninterrupted run over the same stream into a second database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from libs.events import EventBase
from libs.readmodel.digest import read_model_digest, row_counts
from libs.runtime.config import Config
from tests.conftest import PostgresCluster
from tests.support.events import (
    History,
    checkpoint,
    publish,
    read_models,
    rows,
    running_projector,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration

MEMORIES = 100
REVISIONS = 9
TAGGINGS = 5  # 100 * (1 + 9 + 5) = 1500 events


def _rounds(h: History) -> list[list[EventBase]]:
    """Events in rounds: a round holds at most one event per memory, so a round may be
    published concurrently while each memory's own events stay in order."""
    created = [h.created(f"m{i} v0", tags=("t0",)) for i in range(MEMORIES)]
    ids = [e.aggregate_id for e in created]
    rounds: list[list[EventBase]] = [list(created)]
    for step in range(REVISIONS):
        rounds.append([h.revised(m, f"m{i} v{step + 1}") for i, m in enumerate(ids)])
        if step < TAGGINGS:
            rounds.append([h.tagged(m, added=(f"t{step + 1}",), removed=(f"t{step}",))
                           for m in ids])
    return rounds


class Fleet:
    """Projector processes (``mnemos serve projector``) started and killed by the test."""

    def __init__(self, config: Config, logs: Path) -> None:
        self.url = config.database_url or ""
        self.logs = logs
        self.env = {**os.environ, "MNEMOS_NATS_URL": config.nats_url or "",
                    "MNEMOS_DATABASE_URL": self.url, "MNEMOS_HOME": str(logs / "home"),
                    "MNEMOS_LOG_LEVEL": "warning"}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self) -> None:
        with (self.logs / f"projector-{len(self.procs)}.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "mnemos", "serve", "projector"],
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[proc.pid] = proc

    async def leader(self, not_pid: int | None = None, timeout_s: float = 30.0) -> int:
        """Pid of the process holding the projector lock (read from its application name)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with await psycopg.AsyncConnection.connect(self.url) as conn:
                cur = await conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
                    " AND a.application_name LIKE 'mnemos-projector-%'", prepare=False,
                )
                found = await cur.fetchone()
            if found and int(found[0].rsplit("-", 1)[1]) != not_pid:
                return int(found[0].rsplit("-", 1)[1])
            await asyncio.sleep(0.05)
        raise AssertionError("no projector took the lead")

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs[pid].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


class Publisher:
    """Publishes the rounds as a steady stream (~6 s), recording each round's last sequence."""

    def __init__(self, js: object, rounds: list[list[EventBase]]) -> None:
        self.js, self.rounds = js, rounds
        self.published: list[int] = []
        self._progress = asyncio.Event()

    async def run(self) -> int:
        for batch in self.rounds:
            seqs = await asyncio.gather(*(publish(self.js, e) for e in batch))
            self.published.append(max(seqs))
            self._progress.set()
            await asyncio.sleep(0.4)
        return self.published[-1]

    async def after_round(self, index: int) -> None:
        while len(self.published) <= index:
            self._progress.clear()
            await self._progress.wait()


async def _assert_projected_once(url: str, total: int) -> str:
    """Check the exactly-once shape of the read models; return their digest."""
    async with read_models(url) as conn:
        counts = await row_counts(conn)
        assert counts["memory_events"] == total
        assert counts["memories"] == MEMORIES
        assert counts["memory_versions"] == MEMORIES * (REVISIONS + 1)
        assert counts["dead_letters"] == 0
        distinct = await rows(conn, "SELECT count(DISTINCT event_id) AS n,"
                              " count(DISTINCT seq) AS s FROM memory_events")
        assert distinct == [{"n": total, "s": total}]
        shapes = await rows(conn, "SELECT DISTINCT version_count, tags,"
                            " content LIKE '%% v' || %s AS latest FROM memories", [REVISIONS])
        assert shapes == [{"version_count": REVISIONS + 1, "tags": [f"t{TAGGINGS}"],
                           "latest": True}]
        return await read_model_digest(conn)


async def test_sigkill_mid_stream_projects_every_event_exactly_once(
    config: Config, nats_js, pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = config.database_url or ""
    rounds = _rounds(History())
    total = sum(len(r) for r in rounds)
    assert total == 1500
    fleet, publisher = Fleet(config, tmp_path), Publisher(nats_js, rounds)
    mid_stream = []
    try:
        fleet.spawn()
        leader = await fleet.leader(timeout_s=60)
        fleet.spawn()  # the hot standby
        publishing = asyncio.create_task(publisher.run())
        for kill_after in (3, 9):
            # Shortly after a round lands the leader is busy embedding/applying it.
            await publisher.after_round(kill_after)
            await asyncio.sleep(0.1)
            fleet.kill(leader)
            killed_at = await checkpoint(url)
            mid_stream.append(killed_at < publisher.published[-1])
            fleet.spawn()  # the killed one comes back as the new standby
            leader = await fleet.leader(not_pid=leader)
            await wait_checkpoint(url, killed_at + 1, 30)  # the standby carried on
        last = await publishing
        await wait_checkpoint(url, last, timeout_s=60)
    finally:
        fleet.stop()
    codes = [p.returncode for p in fleet.procs.values()]
    assert sorted(codes) == [-signal.SIGKILL, -signal.SIGKILL, 0, 0]  # SIGTERM: clean exit
    assert any(mid_stream), "no kill landed while events were waiting to be projected"
    killed_digest = await _assert_projected_once(url, total)

    # One clean run over the same stream, into a fresh database, with its own consumer.
    clean = config.model_copy(update={"database_url": pg_cluster.new_database()})
    async with running_projector(clean, consumer="projector_clean"):
        await wait_checkpoint(clean.database_url or "", last, timeout_s=60)
    async with read_models(clean.database_url or "") as conn:
        assert await read_model_digest(conn) == killed_digest
