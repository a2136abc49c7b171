"""The broker SIGKILLed and restarted again and again under writes (issue 10, defect 4): the
projector and the auditor, real processes on the shared consumer runtime, catch up after every
restart without being restarted themselves, lose nothing, project nothing twice, and stop within
seconds on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libs.runtime.config import Config
from libs.runtime.nats_client import connect_nats
from libs.runtime.nats_server import NatsServer
from tests.support.auditor import chain_head
from tests.support.events import History, checkpoint, publish, read_models, rows

pytestmark = pytest.mark.integration

KILLS = 3
ROUNDS_PER_KILL = 4


def _spawn(service: str, config: Config, logs: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MNEMOS_NATS_URL": config.nats_url or "",
           "MNEMOS_DATABASE_URL": config.database_url or "", "MNEMOS_HOME": str(config.home),
           "MNEMOS_LOG_LEVEL": "info"}
    with (logs / f"{service}.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "mnemos", "serve", service], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def _publish_round(nats_url: str, h: History, count: int) -> int:
    """Publish ``count`` creations, retrying each until acknowledged (the broker may be
    restarting); the last acknowledged sequence."""
    nc = await connect_nats(nats_url, "tests-broker-kills")
    try:
        js = nc.jetstream()
        last = 0
        for event in [h.created(f"kill round fact {h.count}-{i}") for i in range(count)]:
            for _ in range(200):
                try:
                    last = max(last, await publish(js, event))
                    break
                except Exception:  # the broker is away; the same event id is retried
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the broker never came back")
        return last
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _caught_up(config: Config, seq: int, timeout_s: float = 90.0) -> None:
    url = config.database_url or ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await checkpoint(url) >= seq and await asyncio.to_thread(chain_head, config) >= seq:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not caught up with {seq}: projector {await checkpoint(url)}, chain "
                         f"{await asyncio.to_thread(chain_head, config)}")


@pytest.mark.timeout(600)
async def test_consumers_recover_from_repeated_broker_kills_by_themselves(
        config: Config, nats_server: NatsServer, tmp_path: Path) -> None:
    h = History(ns="kills")
    services = [_spawn(name, config, tmp_path) for name in ("projector", "auditor")]
    try:
        last = await _publish_round(nats_server.url, h, 20)
        await _caught_up(config, last)
        for _ in range(KILLS):
            writer = asyncio.create_task(_publish_round(nats_server.url, h, 60))
            await asyncio.sleep(0.3)
            assert nats_server.process is not None
            nats_server.process.send_signal(signal.SIGKILL)  # no shutdown, no flush
            nats_server.process.wait(10)
            await asyncio.sleep(1.0)
            nats_server.start()
            last = max(last, await writer)
            await _caught_up(config, last)
            assert all(p.poll() is None for p in services), "a consumer exited"
    finally:
        for proc in services:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        codes = [proc.wait(30) for proc in services]
        stop_s = time.monotonic() - started
    assert codes == [0, 0] and stop_s < 20, (codes, stop_s)
    async with read_models(config.database_url or "") as conn:
        projected = await rows(conn, "SELECT count(*) AS n, count(DISTINCT event_id) AS d"
                                     " FROM memory_events")
        letters = await rows(conn, "SELECT count(*) AS n FROM dead_letters")
    # Every event acknowledged is projected, once (retries reused their event ids).
    assert projected == [{"n": h.count, "d": h.count}]
    assert letters == [{"n": 0}]
