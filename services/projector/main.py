"""The projector service: ``mnemos serve projector``.

Applies the read-model migrations, then folds ``MNEMOS_EVENTS`` into Postgres as the single
active projector of the schema (other instances wait as hot standbys).
"""

from __future__ import annotations

import asyncio
import contextlib

from libs.embeddings import Embedder, build_embedder
from libs.events import InvalidInput
from libs.readmodel.schema import prepare_schema
from libs.runtime.config import Config
from libs.runtime.garbage import tune_for_throughput
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import await_streams, connect_nats, nats_credentials
from libs.runtime.startup import retry_until_ready
from services.projector.handler import CONSUMER_NAME, ProjectorSettings, projector_runtime

__all__ = ["database_url_of", "nats_url_of", "run"]

log = get_logger(__name__)


def database_url_of(config: Config) -> str:
    """The Postgres URL a service connects to (``mnemos up`` always sets one)."""
    if not config.database_url:
        raise InvalidInput("MNEMOS_DATABASE_URL is not set; the projector needs a Postgres URL")
    return config.database_url


def nats_url_of(config: Config) -> str:
    """The NATS URL: the configured one, else the embedded server's local port."""
    return config.nats_url or f"nats://127.0.0.1:{config.nats_port}"


async def run(config: Config, stop: asyncio.Event, *, consumer: str = CONSUMER_NAME,
              embedder: Embedder | None = None) -> None:
    """Run the projector until ``stop`` is set; the batch in flight is finished first.

    Waits for Postgres and NATS at start (saying so). ``consumer`` and ``embedder`` exist for
    tests and tools that project a second database from the same stream (their own durable
    consumer) or count embedding calls.
    """
    embedder = embedder or build_embedder(config)
    database_url = database_url_of(config)

    async def migrate() -> bool:
        await asyncio.to_thread(prepare_schema, database_url, config.db_schema, embedder.dim)
        return True

    if await retry_until_ready("postgres (read-model migrations)", migrate, stop) is None:
        return
    nc = await retry_until_ready("nats", lambda: connect_nats(
        nats_url_of(config), f"mnemos-{consumer}", nats_credentials(config)), stop)
    if nc is None:
        return
    try:
        streams = await retry_until_ready(
            "the event stream", lambda: await_streams(nc.jetstream(), config), stop)
        if streams is None:
            return
        settings = ProjectorSettings(database_url=database_url, schema=config.db_schema,
                                     consumer=consumer)
        tune_for_throughput()
        checkpoint = await projector_runtime(settings, nc, embedder).run(stop)
        log.info("projector_stopped", checkpoint=checkpoint)
    finally:
        # Acks of the last batch are buffered publishes: flush them before closing.
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()
