"""Connecting to NATS and declaring the streams, the same way in every process."""

from __future__ import annotations

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from libs.events.stream import deadletter_stream_config, events_stream_config
from libs.runtime.config import Config
from libs.runtime.logging import get_logger

__all__ = ["connect_nats", "ensure_streams"]

log = get_logger(__name__)


async def connect_nats(url: str, name: str) -> Client:
    """Connect with reconnects forever: a restarted broker is waited for, not fatal."""
    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc), client=name)

    client: Client | None = None

    async def on_disconnect() -> None:
        if client is not None and (client.is_closed or client.is_draining):
            return  # our own shutdown, not an outage
        log.warning("nats_disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", client=name)

    client = await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
        error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
    )
    return client


async def ensure_streams(js: JetStreamContext, config: Config) -> None:
    """Create the event and dead-letter streams, or update them to the configured settings."""
    wanted = [
        events_stream_config(config.stream_replicas, config.duplicate_window_s),
        deadletter_stream_config(config.stream_replicas),
    ]
    for stream in wanted:
        try:
            await js.stream_info(str(stream.name))
            try:
                await js.update_stream(stream)
            except BadRequestError as exc:  # e.g. replicas cannot change on a single node
                log.warning("stream_update_refused", stream=stream.name, error=str(exc))
        except NotFoundError:
            await js.add_stream(stream)
            log.info("stream_created", stream=stream.name)
