"""The gateway service: NATS command/query subscriptions and the HTTP API, until ``stop``.

Start order: NATS (streams declared) -> command handling over NATS and HTTP right away ->
read models in the background (queries answer 503 until the projector has created the schema).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Final

import uvicorn

from libs.auth import (
    Authenticator,
    AuthenticatorSettings,
    ClaimMapping,
    OidcSettings,
    OidcValidator,
)
from libs.auth.key_store import StreamKeyLookup
from libs.consumer.stream_consumers import export_stream_consumers
from libs.embeddings import build_embedder
from libs.events import InvalidInput
from libs.eventstore import EventStore
from libs.readmodel.pool import ReadModels
from libs.readmodel.search import SearchSettings
from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import connect_nats, ensure_streams, nats_credentials
from services.command.application.commands import CommandService, memory_store
from services.command.application.forward import Forwarder
from services.command.application.gateway import Gateway, bind_handlers
from services.command.application.history import HistoryService
from services.command.application.keys import KeyService
from services.command.application.principals import (
    AssertedPrincipals,
    PrincipalResolver,
    SecuredPrincipals,
)
from services.command.application.queries import QueryService
from services.command.domain.memory import MemoryState
from services.command.entrypoints.http import create_app
from services.command.entrypoints.nats import NatsEntrypoint

__all__ = ["bootstrap", "principals_of", "run"]

KEY_EVENTS: Final = "mnemos.evt.system.apikey.>"

log = get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service's ``stop`` event governs shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def nats_url(config: Config) -> str:
    """The configured NATS URL, or the embedded server's local address."""
    return config.nats_url or f"nats://127.0.0.1:{config.nats_port}"


async def _wait_started(server: _Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()  # re-raise why it failed (e.g. port in use)
            raise RuntimeError("HTTP server exited before starting")
        await asyncio.sleep(0.01)


def bootstrap(config: Config, nc: Any, store: EventStore[MemoryState], read_models: ReadModels
              ) -> Gateway:
    """Wire the application once: every handler with its dependencies, one registry."""
    commands = CommandService(store, read_models, config)
    queries = QueryService(read_models, lambda: build_embedder(config),
                           settings=SearchSettings.from_config(config))
    forward = Forwarder(nc)
    handlers = bind_handlers(commands, queries, HistoryService(read_models),
                             KeyService(nc.jetstream()), forward)
    return Gateway(handlers, forward)


def principals_of(config: Config, nc: Any) -> tuple[PrincipalResolver, Authenticator | None]:
    """Who callers are: from their credentials (the default), or asserted (``auth=off``)."""
    if config.auth == "off":
        log.warning("authentication_off", detail="anonymous access: every caller may read and "
                    "write every namespace and names its own principal (MNEMOS_AUTH=off)")
        return AssertedPrincipals(), None
    oidc = None
    if config.oidc_issuer and config.oidc_audience:
        oidc = OidcValidator(OidcSettings(
            issuer=config.oidc_issuer, audience=config.oidc_audience,
            jwks_url=config.oidc_jwks_url,
            claims=ClaimMapping(principal_claim=config.oidc_principal_claim,
                                grants_claim=config.oidc_grants_claim)))
    authenticator = Authenticator(StreamKeyLookup(nc.jetstream()), oidc,
                                  AuthenticatorSettings(key_ttl_s=config.key_cache_s))
    return SecuredPrincipals(authenticator), authenticator


async def watch_keys(nc: Any, authenticator: Authenticator | None) -> Any:
    """Forget a key's cached record the moment its issue or revocation is appended."""
    if authenticator is None:
        return None

    async def on_key_event(msg: Any) -> None:
        authenticator.invalidate(msg.subject.rsplit(".", 1)[-1])

    return await nc.subscribe(KEY_EVENTS, cb=on_key_event)


async def run(config: Config, stop: asyncio.Event) -> None:
    """Run the gateway until ``stop`` is set, then drain in-flight requests and return."""
    if not config.database_url:
        raise InvalidInput("the gateway needs MNEMOS_DATABASE_URL (the read models' Postgres)")
    nc = await connect_nats(nats_url(config), "mnemos-command", nats_credentials(config))
    js = nc.jetstream()
    store = memory_store(js)
    read_models = ReadModels(config, stream_last_seq=store.last_seq)
    db_task = asyncio.create_task(read_models.open_when_ready(stop), name="read-models")
    try:
        await ensure_streams(js, config)
        gateway = bootstrap(config, nc, store, read_models)
        principals, authenticator = principals_of(config, nc)
        await watch_keys(nc, authenticator)
        lag_task = asyncio.create_task(
            export_stream_consumers(js, stop, config.stream_consumers_s), name="stream-consumers")
        entrypoint = NatsEntrypoint(nc, gateway, principals, config.max_request_bytes)
        await entrypoint.start()

        async def readiness() -> dict[str, bool]:
            return {"nats": bool(nc.is_connected), "database": await read_models.ping(),
                    "storage": not store.storage_refused()}

        app = create_app(gateway, principals, config.max_request_bytes, readiness)
        server = _Server(uvicorn.Config(
            app, host=config.http_host, port=config.http_port, log_config=None,
            access_log=False, lifespan="off", server_header=False,
        ))
        http_task = asyncio.create_task(server.serve(), name="http")
        await _wait_started(server, http_task)
        log.info("gateway_listening", http=f"http://{config.http_host}:{config.http_port}",
                 docs=f"http://{config.http_host}:{config.http_port}/docs",
                 nats=nats_url(config))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({stopped, http_task}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        server.should_exit = True
        await entrypoint.stop()
        await http_task
        lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag_task
    finally:
        db_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await db_task
        await read_models.close()
        await nc.drain()
        log.info("gateway_stopped")
