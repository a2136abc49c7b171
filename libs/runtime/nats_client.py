"""Connecting to NATS and declaring the streams, the same way in every process."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from libs.events.errors import Unavailable
from libs.events.stream import EVENTS_STREAM, deadletter_stream_config, events_stream_config
from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from libs.runtime.nats_auth import BrokerIdentities

__all__ = [
    "await_streams",
    "connect_nats",
    "credentials",
    "ensure_streams",
    "nats_credentials",
    "servers_of",
    "tls_context",
]

log = get_logger(__name__)


def credentials(home: Path, identity: str) -> dict[str, str]:
    """``nats.connect`` options of broker identity ``identity`` if ``mnemos up`` (or an
    operator) provisioned its seed under ``home``; none for an open broker."""
    identities = BrokerIdentities(home.expanduser())
    if not identities.seed_path(identity).exists():
        return {}
    return identities.connect_options(identity)


def _identity_options(config: Config) -> dict[str, str]:
    return credentials(config.home, config.nats_identity) if config.nats_identity else {}


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only the broker CA in ``ca_file`` (PEM) and checks the
    server's name against the URL's host."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))


def nats_credentials(config: Config) -> dict[str, Any]:
    """The ``nats.connect`` options of ``config``'s broker identity (none when it has none),
    plus the TLS context when ``nats_tls_ca`` names the broker's CA."""
    options: dict[str, Any] = dict(_identity_options(config))
    if config.nats_tls_ca is not None:
        options["tls"] = tls_context(config.nats_tls_ca.expanduser())
    return options


def servers_of(url: str) -> list[str]:
    """The server URLs of ``url``, which may list several, comma-separated (a cluster)."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    return servers or [url]


async def await_streams(js: JetStreamContext, config: Config) -> bool:
    """True once the event stream exists; :class:`Unavailable` while it does not, for
    :func:`retry_until_ready`. On a secured broker only the operator (``mnemos up``) and the
    gateway may declare streams, so a service with broker credentials waits for them; without
    any (no seed provisioned for its identity) the broker is open to everyone and the service
    declares them itself."""
    if not _identity_options(config):  # no seed provisioned: an open broker
        await ensure_streams(js, config)
        return True
    try:
        await js.stream_info(EVENTS_STREAM)
    except NotFoundError:
        raise Unavailable(f"stream {EVENTS_STREAM} does not exist yet") from None
    return True


async def connect_nats(url: str, name: str, identity: Mapping[str, Any] | None = None
                       ) -> Client:
    """Connect with reconnects forever: a restarted broker is waited for, not fatal.
    ``url`` may list several servers (:func:`servers_of`); ``identity``: the broker
    credentials and TLS options (see :func:`nats_credentials`)."""
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
        servers_of(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
        error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
        **(identity or {}),
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
