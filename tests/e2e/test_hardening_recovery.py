"""Postgres going away and coming back (issue 10, defects 5 and 6), on a Postgres of the test's
own so it can really be stopped: a command id is never appended twice in any state of the
system, and the first query after Postgres returns succeeds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from libs.events import EVENTS_STREAM, new_command_id
from libs.runtime.config import Config, load_config
from libs.runtime.nats_server import NatsServer, free_port
from libs.runtime.postgres_server import PostgresServer
from services.command import main as gateway_main
from services.projector import main as projector_main
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "recovery"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg" / "data", fast_stop=True)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def recovery_config(tmp_path: Path, nats_server: NatsServer, own_postgres: PostgresServer
                    ) -> Config:
    config = load_config(home=tmp_path / "home", nats_url=nats_server.url,
                         database_url=own_postgres.url, http_port=free_port(), auth="off")
    # A 1 s duplicate window (Config refuses < 120 s; model_copy does not validate), so the
    # test can wait past it.
    return config.model_copy(update={"duplicate_window_s": 1.0})


@contextlib.asynccontextmanager
async def gateway_only(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway alone (no projector), ready when it answers /healthz."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway_main.run(config, stop))
    base = f"http://{config.http_host}:{config.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            for _ in range(400):
                if task.done():
                    task.result()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            yield http
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _count(config: Config) -> int:
    nc = await nats.connect(config.nats_url or "")
    try:
        return int((await nc.jetstream().stream_info(EVENTS_STREAM)).state.messages)
    finally:
        await nc.close()


async def _tag(http: httpx.AsyncClient, memory_id: str, tag: str, command_id: str | None
               ) -> httpx.Response:
    body: dict[str, Any] = {"add": [tag]}
    if command_id:
        body["command_id"] = command_id
    return await http.post(f"/v1/{NS}/memories/{memory_id}/tag", json=body)


async def test_a_command_id_is_never_appended_twice(recovery_config: Config,
                                                    own_postgres: PostgresServer) -> None:
    config, reused = recovery_config, new_command_id()
    async with running_gateway(config) as (http, _nc):
        m1 = (await http.post(f"/v1/{NS}/memories", json={"content": "one"})).json()["memory_id"]
        created = (await http.post(f"/v1/{NS}/memories", json={"content": "two"})).json()
        m2 = created["memory_id"]
        # With a 1 s window, a client id is only accepted once the projection has caught up.
        assert (await http.get(f"/v1/{NS}/memories/{m2}",
                               params={"after_seq": created["seq"]})).status_code == 200
        first = await _tag(http, m1, "x", reused)
        assert first.status_code == 200 and not first.json()["duplicate"], first.text
        retry = await _tag(http, m1, "x", reused)
        assert retry.status_code == 200 and retry.json()["duplicate"], retry.text
        for memory_id, tag in ((m2, "x"), (m1, "y")):  # inside the window: JetStream's guard
            other = await _tag(http, memory_id, tag, reused)
            assert other.status_code == 409, other.text
            assert other.json()["error"]["detail"]["reason"] == "command_id_reused"
        seq = first.json()["seq"]
        assert (await http.get(f"/v1/{NS}/memories/{m1}",
                               params={"after_seq": seq})).status_code == 200
        await asyncio.sleep(1.5)  # past the duplicate window: command_results answers
        late = await _tag(http, m2, "x", reused)
        assert late.status_code == 409, late.text
    appended = await _count(config)

    own_postgres.stop()
    async with gateway_only(config) as http:  # a restarted gateway that never saw Postgres
        refused = await _tag(http, m2, "x", reused)
        assert refused.status_code == 503, refused.text
        retried = await _tag(http, m1, "x", reused)  # the memory's own history still answers
        assert retried.status_code == 200 and retried.json()["duplicate"], retried.text
        fresh = await _tag(http, m2, "z", None)  # writes without a client id still work
        assert fresh.status_code == 200, fresh.text
        assert await _count(config) == appended + 1
        own_postgres.start()
        for _ in range(200):  # the gateway finds Postgres again by itself
            if (await http.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        # No projector runs: a sequence in the stream but not projected times out as 503.
        waited = await http.get(f"/v1/{NS}/memories/{m2}", params={"after_seq": appended + 1})
        assert waited.status_code == 503, waited.text
        error = waited.json()["error"]
        assert error["code"] == "unavailable" and error["detail"]["after_seq"] == appended + 1
    async with running_gateway(config) as (http, _nc):
        again = await _tag(http, m2, "x", reused)
        assert again.status_code == 409, again.text
    assert await _count(config) == appended + 1


async def test_the_first_query_after_postgres_restarts_succeeds(
        recovery_config: Config, own_postgres: PostgresServer) -> None:
    async with running_gateway(recovery_config) as (http, _nc):
        created = (await http.post(f"/v1/{NS}/memories", json={"content": "kept"})).json()
        path = f"/v1/{NS}/memories/{created['memory_id']}"
        for _ in range(3):  # fill the pool with connections that will die
            assert (await http.get(path, params={"after_seq": created["seq"]})).status_code == 200
        own_postgres.stop()
        own_postgres.start()
        assert (await http.get("/readyz")).status_code == 200
        for _ in range(5):
            response = await http.get(path)
            assert response.status_code == 200, response.text


async def test_services_started_before_postgres_wait_for_it(
        recovery_config: Config, own_postgres: PostgresServer) -> None:
    """Issue 10, defect 11: a projector (and a gateway) started while Postgres is down wait and
    back off instead of exiting, then serve once it is up."""
    own_postgres.stop()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(projector_main.run(recovery_config, stop)),
             asyncio.create_task(gateway_main.run(recovery_config, stop))]
    try:
        await asyncio.sleep(4)
        exited = [task for task in tasks if task.done()]
        assert not exited, [task.exception() for task in exited]
        own_postgres.start()
        base = f"http://{recovery_config.http_host}:{recovery_config.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            created = (await http.post(f"/v1/{NS}/memories", json={"content": "late"})).json()
            served = await http.get(f"/v1/{NS}/memories/{created['memory_id']}",
                                    params={"after_seq": created["seq"]})
            assert served.status_code == 200, served.text
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def test_a_poison_event_not_yet_dead_lettered_does_not_fail_commands(
        recovery_config: Config) -> None:
    """An undecodable event waiting for the projector (here: none runs) used to fail every
    command that carried a command id with a 500, because the duplicate-window check decoded
    the oldest unprojected event; it now reads that message's stream time only."""
    config = recovery_config
    async with running_gateway(config) as (http, nc):
        created = (await http.post(f"/v1/{NS}/memories", json={"content": "before"})).json()
        assert (await http.get(f"/v1/{NS}/memories/{created['memory_id']}",
                               params={"after_seq": created["seq"]})).status_code == 200
    nc = await nats.connect(config.nats_url or "")
    try:
        await nc.jetstream().publish(f"mnemos.evt.{NS}.memory.poison", b"not an event")
    finally:
        await nc.close()
    async with gateway_only(config) as http:  # read models up, no projector: poison waits
        for _ in range(200):
            if (await http.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        answer = await http.post(f"/v1/{NS}/memories",
                                 json={"content": "after", "command_id": new_command_id()})
        assert answer.status_code == 201, answer.text
