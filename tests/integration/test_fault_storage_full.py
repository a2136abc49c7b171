"""Fault: the broker's storage is full (issue 17 item 2). The gateway answers every write with a
typed ``unavailable`` error at once — bounded, never a hang — appends nothing, and /readyz
reports the storage as failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from libs.events import EVENTS_STREAM
from libs.readmodel.schema import prepare_schema
from libs.runtime.config import Config
from libs.runtime.nats_client import connect_nats
from libs.runtime.nats_server import NatsServer, free_port
from tests.support.services import running_gateway_alone

pytestmark = pytest.mark.integration

STORE_LIMIT = "256KB"


class TinyStoreNats(NatsServer):
    """A nats-server whose JetStream may store only ``STORE_LIMIT`` (a full disk, cheaply)."""

    def _write_config(self) -> Path:
        conf = super()._write_config()
        text = conf.read_text()
        assert text.count("jetstream {") == 1
        conf.write_text(text.replace("jetstream {", f"jetstream {{\n  max_file_store: "
                                                    f"{STORE_LIMIT}"))
        return conf


async def _last_seq(url: str) -> int:
    nc = await connect_nats(url, "tests-storage-full")
    try:
        return int((await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq or 0)
    finally:
        await nc.close()


@pytest.mark.timeout(300)
async def test_a_full_store_is_a_typed_error_and_fails_readiness(
        config: Config, tmp_path: Path) -> None:
    server = TinyStoreNats(tmp_path / "tiny-nats", port=free_port())
    server.start()
    try:
        config = config.model_copy(update={"nats_url": server.url})
        await asyncio.to_thread(prepare_schema, config.database_url or "", config.db_schema, 384)
        async with running_gateway_alone(config) as http:
            for _ in range(600):  # the store is ready once the read models are open
                if (await http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/readyz")).json()["storage"] is True
            body = {"content": "a fact that takes room " + "x" * 8000}
            answers = []
            for _ in range(100):  # 100 x 8 KB is three times the store
                answer = await http.post("/v1/full/memories", json=body)
                answers.append(answer.status_code)
                if answer.status_code != 201:
                    break
            assert answers[0] == 201 and answers[-1] == 503, answers
            error = answer.json()["error"]
            assert error["code"] == "unavailable" and "no storage left" in error["message"]
            before = await _last_seq(server.url)
            again = await http.post("/v1/full/memories", json=body)
            assert again.status_code == 503
            assert await _last_seq(server.url) == before  # nothing appended
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"ready": False, "nats": True, "database": True,
                                    "storage": False}
    finally:
        server.stop()
