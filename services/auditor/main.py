"""Auditor service entry point: ``async def run(config, stop)``.

Applies the auditor's migrations, loads (or creates) the signing key, answers its queries on the
bus, and extends the chain on the shared consumer runtime (one active instance, hot standbys).
"""

from __future__ import annotations

import asyncio
import contextlib

from libs.events import Unavailable
from libs.runtime.bus import OperationServer
from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import await_streams, connect_nats, nats_credentials
from libs.runtime.startup import retry_until_ready
from services.auditor.files import load_or_create_key, signing_key_path
from services.auditor.operations import AUDITOR_OPERATIONS, auditor_handlers
from services.auditor.store import migrate
from services.auditor.writer import auditor_runtime

__all__ = ["run"]

log = get_logger(__name__)

async def run(config: Config, stop: asyncio.Event) -> None:
    """Run the auditor until ``stop`` is set (waiting for Postgres and NATS at start)."""
    if config.database_url is None or config.nats_url is None:
        raise Unavailable("the auditor needs MNEMOS_DATABASE_URL and MNEMOS_NATS_URL")
    url, nats_url = config.database_url, config.nats_url

    async def migrated() -> bool:
        await asyncio.to_thread(migrate, url, config.db_schema)
        return True

    if await retry_until_ready("postgres (audit migrations)", migrated, stop) is None:
        return
    key = await asyncio.to_thread(load_or_create_key, signing_key_path(config))
    nc = await retry_until_ready("nats", lambda: connect_nats(nats_url, "auditor",
                                                            nats_credentials(config)), stop)
    if nc is None:
        return
    server = OperationServer(nc, "auditor", AUDITOR_OPERATIONS, auditor_handlers(config))
    try:
        streams = await retry_until_ready(
            "the event stream", lambda: await_streams(nc.jetstream(), config), stop)
        if streams is None:
            return
        await server.start()
        head = await auditor_runtime(config, nc, key).run(stop)
        log.info("auditor_stopped", head=head)
    finally:
        await server.stop()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()
