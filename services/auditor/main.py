"""Auditor service entry point: ``async def run(config, stop)``.

Applies the auditor's migrations, loads (or creates) the signing key, then loops: wait for the
writer lock (standby), extend the chain while holding it, and on a lost connection go back to
waiting. Several instances may run; exactly one extends the chain at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client

from libs.events import Unavailable
from libs.runtime.bus import OperationServer
from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import connect_nats, ensure_streams
from services.auditor.files import audit_dir, load_or_create_key
from services.auditor.operations import AUDITOR_OPERATIONS, auditor_handlers
from services.auditor.store import ChainStore, connect, migrate
from services.auditor.writer import ChainWriter

__all__ = ["run"]

log = get_logger(__name__)

_STANDBY_POLL_S: Final = 1.0
_RETRY_S: Final = 2.0


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run(config: Config, stop: asyncio.Event) -> None:
    """Run the auditor until ``stop`` is set."""
    if config.database_url is None or config.nats_url is None:
        raise Unavailable("the auditor needs MNEMOS_DATABASE_URL and MNEMOS_NATS_URL")
    await asyncio.to_thread(migrate, config.database_url, config.db_schema)
    key = await asyncio.to_thread(load_or_create_key, audit_dir(config))
    nc = await connect_nats(config.nats_url, "auditor")
    server = OperationServer(nc, "auditor", AUDITOR_OPERATIONS, auditor_handlers(config))
    try:
        await ensure_streams(nc.jetstream(), config)
        await server.start()
        while not stop.is_set():
            try:
                await _hold_and_extend(config, nc, key, stop)
            except (psycopg.Error, OSError, TimeoutError, ConnectionError) as exc:
                log.warning("auditor_retry", error=str(exc), error_type=type(exc).__name__)
                await _wait(stop, _RETRY_S)
            except Exception as exc:  # NATS errors have no common base worth naming here
                log.exception("auditor_error", error=str(exc))
                await _wait(stop, _RETRY_S)
    finally:
        await server.stop()
        await nc.drain()


async def _hold_and_extend(config: Config, nc: Client, key: Ed25519PrivateKey,
                           stop: asyncio.Event) -> None:
    conn = await connect(str(config.database_url), config.db_schema)
    try:
        store = ChainStore(conn)
        announced = False
        while not await store.try_lock(config.db_schema):
            if not announced:
                log.info("auditor_standby", reason="another instance holds the writer lock")
                announced = True
            await _wait(stop, _STANDBY_POLL_S)
            if stop.is_set():
                return
        log.info("auditor_writer_lock_acquired")
        writer = ChainWriter(config, nc, store, key)
        await writer.run(stop)
    finally:
        await conn.close()
