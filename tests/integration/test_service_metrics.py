"""Every service without an HTTP face of its own serves ``/healthz``, ``/readyz`` and Prometheus
``/metrics`` on its metrics port (issue 17), scraped here from real ``mnemos serve`` processes:
consumer lag per durable (events and seconds), events handled, dead letters, chain head and
the newest verification's result."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.runtime.config import Config
from libs.runtime.health import serve_health
from libs.runtime.nats_server import free_port
from tests.support.auditor import audit_cli, wait_for_head
from tests.support.events import History, publish, read_models, running_projector, wait_checkpoint

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(f"http://127.0.0.1:{port}{path}")


async def scrape(port: int) -> Samples:
    """Every sample of the service's ``/metrics``, by name and labels."""
    text = (await get(port, "/metrics")).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def until(check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = await check()
            if result:
                return result
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "not within the timeout"
        await asyncio.sleep(0.1)


@contextmanager
def served(config: Config, name: str, port: int, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``mnemos serve <name>`` with its metrics port, stopped with SIGTERM on exit."""
    env = {**os.environ, "MNEMOS_NATS_URL": str(config.nats_url),
           "MNEMOS_DATABASE_URL": str(config.database_url), "MNEMOS_HOME": str(config.home),
           "MNEMOS_DB_SCHEMA": config.db_schema, "MNEMOS_LOG_LEVEL": "warning",
           "MNEMOS_METRICS_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mnemos", "serve", name], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def ready(port: int, component: str) -> bool:
    answer = await get(port, "/readyz")
    return answer.status_code == 200 and answer.json()["components"][component] == "active"


async def test_projector_and_auditor_serve_health_readiness_and_their_metrics(
        config: Config, nats_js: Any, tmp_path: Path) -> None:
    projector_port, auditor_port = free_port(), free_port()
    with served(config, "projector", projector_port, tmp_path), \
            served(config, "auditor", auditor_port, tmp_path):
        for port, component in ((projector_port, "consumer:projector"),
                                (auditor_port, "consumer:auditor")):
            await until(lambda p=port, c=component: ready(p, c))
            assert (await get(port, "/healthz")).status_code == 200
        h = History()
        created = [h.created(f"fact {i}") for i in range(3)]
        for event in [*created, h.tagged(created[0].aggregate_id, added=("t",))]:
            await publish(nats_js, event)
        await nats_js.publish("mnemos.evt.team-a.memory.bad", b"not an event")  # dead letter
        last = (await nats_js.stream_info("MNEMOS_EVENTS")).state.last_seq
        await wait_checkpoint(config.database_url or "", last)
        await wait_for_head(config, last)
        assert audit_cli(config, "verify").returncode == 0

        own = {"consumer": "projector", "schema": config.db_schema}
        async def projected() -> Samples | None:
            s = await scrape(projector_port)
            return s if value(s, "mnemos_consumer_checkpoint_seq", **own) == last else None

        got = await until(projected)
        assert value(got, "mnemos_consumer_pending", **own) == 0
        assert value(got, "mnemos_consumer_lag_seconds", **own) == 0.0
        assert value(got, "mnemos_consumer_events_total", **own) == last
        assert value(got, "mnemos_consumer_leader", **own) == 1
        assert value(got, "mnemos_projector_dead_lettered_total", schema=config.db_schema) == 1
        assert sum(v for (n, _), v in got.items()
                   if n == "mnemos_projector_events_projected_total") == 4

        async def verified() -> Samples | None:  # re-read by the auditor every 5 s
            s = await scrape(auditor_port)
            return s if value(s, "mnemos_audit_last_verification_ok") == 1 else None

        audited = await until(verified, timeout_s=20)
        assert value(audited, "mnemos_audit_chain_head_seq") == last
        assert value(audited, "mnemos_audit_last_verification_timestamp_seconds") > 1.7e9
        assert value(audited, "mnemos_consumer_checkpoint_seq", consumer="auditor",
                     schema=config.db_schema) == last


SLOW = ("CREATE FUNCTION mnemos.slow_projection() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.content LIKE 'slow%' THEN PERFORM pg_sleep(3); END IF; RETURN NEW; END $$;"
        " CREATE TRIGGER slow_projection BEFORE INSERT ON mnemos.memories"
        " FOR EACH ROW EXECUTE FUNCTION mnemos.slow_projection()")


async def test_projection_lag_in_seconds_grows_while_an_event_waits_and_returns_to_zero(
        config: Config, nats_js: Any) -> None:
    port = free_port()
    server = serve_health(port)
    try:
        assert (await get(port, "/readyz")).status_code == 503  # no consumer active here yet
        own = {"consumer": "projector", "schema": config.db_schema}
        h = History()
        async with running_projector(config):
            await until(lambda: ready(port, "consumer:projector"))
            await wait_checkpoint(config.database_url or "", await publish(
                nats_js, h.created("quick")))
            async with read_models(config.database_url or "") as conn:
                await conn.execute(SLOW)
            seq = await publish(nats_js, h.created("slow to project"))
            # While the event waits (3 s in a trigger), its age is the lag, and readiness holds:
            # slow is not down.
            async def lagging() -> bool:
                return value(await scrape(port), "mnemos_consumer_lag_seconds", **own) >= 1.0

            await until(lagging, timeout_s=10)
            assert (await get(port, "/readyz")).status_code == 200
            await wait_checkpoint(config.database_url or "", seq)
            assert value(await scrape(port), "mnemos_consumer_lag_seconds", **own) == 0.0
        stopped = await get(port, "/readyz")
        assert stopped.status_code == 503
        assert "consumer:projector" not in stopped.json()["components"]
    finally:
        server.shutdown()
        server.server_close()


async def test_the_gateway_exports_every_stream_consumer_third_party_ones_too(
        config: Config, nats_js: Any) -> None:
    """A team's own subscriber on the stream is alertable like the projector: the gateway
    exports its pending count, and forgets it once the durable is deleted."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from libs.events import EVENTS_STREAM
    from tests.support.services import running_gateway_alone

    fast = config.model_copy(update={"stream_consumers_s": 0.2})
    h = History()
    for i in range(3):
        await publish(nats_js, h.created(f"for the subscriber {i}"))
    await nats_js.add_consumer(EVENTS_STREAM, ConsumerConfig(
        durable_name="team_search_indexer", ack_policy=AckPolicy.EXPLICIT))
    async with running_gateway_alone(fast) as http:
        async def exported() -> Samples | None:
            text = (await http.get("/metrics")).text
            samples = {(s.name, frozenset(s.labels.items())): s.value
                       for family in text_string_to_metric_families(text)
                       for s in family.samples}
            key = ("mnemos_stream_consumer_pending",
                   frozenset({("durable", "team_search_indexer"), ("owner", "third-party")}))
            return samples if samples.get(key, 0) >= 3 else None

        samples = await until(exported, 30)
        assert value(samples, "mnemos_stream_consumer_ack_pending",
                     durable="team_search_indexer", owner="third-party") == 0
        await nats_js.delete_consumer(EVENTS_STREAM, "team_search_indexer")

        async def forgotten() -> bool:
            return "team_search_indexer" not in (await http.get("/metrics")).text

        assert await until(forgotten, 30)
