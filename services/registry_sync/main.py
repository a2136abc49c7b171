"""The registry_sync service: ``mnemos serve registry_sync`` (started by ``mnemos up``).

Folds the registry from the stream on the shared consumer runtime (one active instance, hot
standbys), then, while active and caught up: answers ``route``, ``consult`` and
``registry_sync`` on ``mnemos.svc.registry_sync.<name>``, and runs the timers (providers daily,
leaderboard weekly, configurable). With no provider configured it idles and says so at start;
``consult`` then answers an error naming what to configure.

Configuration: ``MNEMOS_REGISTRY_CONFIG`` (a JSON file, see
:class:`~services.registry_sync.config.RegistrySyncConfig`), else ``MNEMOS_HOME/registry.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from libs.auth import Principal
from libs.consumer import ConsumerRuntime, ConsumerSettings, sleep_or_stop
from libs.embeddings import Embedder, build_embedder
from libs.events import (
    OPERATIONS,
    AssembleContext,
    ContextView,
    MnemosError,
    Operation,
    Search,
    Unavailable,
)
from libs.events.context import MAX_CONTEXT_BUDGET
from libs.events.model import Actor
from libs.events.reasoning import ConsultResult
from libs.readmodel.pool import ReadModels
from libs.readmodel.registry_queries import get_consultation
from libs.readmodel.search import SearchService
from libs.runtime.bus import OperationHandler, OperationServer, request_operation
from libs.runtime.bus import Progress as SendProgress
from libs.runtime.config import Config
from libs.runtime.database import connect_async
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import await_streams, connect_nats, nats_credentials
from libs.runtime.startup import retry_until_ready
from services.registry_sync.config import RegistrySyncConfig, load_registry_config
from services.registry_sync.follower import RegistryFollower
from services.registry_sync.service import ContextPiece, RegistryService

__all__ = ["CONSUMER_NAME", "REGISTRY_OPERATIONS", "registry_config_path", "run"]

log = get_logger(__name__)

CONSUMER_NAME: Final = "registry_sync"
REGISTRY_OPERATIONS: Final[dict[str, Operation]] = {
    name: op for name, op in OPERATIONS.items() if op.owner == "registry_sync"}
"""The catalog's operations this service answers."""
_CONTEXT_HITS: Final = 10
_CHARS_PER_TOKEN: Final = 4
_HEARTBEAT_S: Final = 10.0


def registry_config_path(config: Config) -> Path:
    """Where the reasoning layer's configuration is read from."""
    return config.registry_config or config.home / "registry.json"


class _LazyEmbedder:
    """The embedder, loaded on first use (start stays fast; consensus needs it)."""

    def __init__(self, config: Config, embedder: Embedder | None) -> None:
        self._config = config
        self._embedder = embedder

    def get(self) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self._config)
        return self._embedder

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.asarray(self.get().embed(texts), dtype=np.float32)


def _search_context(read_models: ReadModels, embedder: _LazyEmbedder
                    ) -> Callable[[str, str, int], Any]:
    """The consultation's context from the search layer, best hits first within the budget:
    the fallback of :func:`_assembled_context` when no compressor answers."""
    search = SearchService(read_models, embedder.get)

    async def context(ns: str, query: str, tokens: int) -> ContextPiece:
        if not read_models.ready:
            return ContextPiece()
        results = await search.search(ns, Search(q=query[:4096], k=_CONTEXT_HITS))
        budget = tokens * _CHARS_PER_TOKEN
        parts: list[str] = []
        ids: list[str] = []
        for hit in results.hits:
            text = f"- {hit.memory.content}"
            if sum(len(p) + 1 for p in parts) + len(text) > budget:
                break
            parts.append(text)
            ids.append(hit.memory.memory_id)
        return ContextPiece(text="\n".join(parts), memory_ids=tuple(ids),
                            source="search" if ids else "none")

    return context


_CONTEXT_WAIT_S: Final = 5.0
"""Longest a consultation waits for the compressor's context before using the search layer."""

_CONSULTING: Final = Principal(name="mnemos-registry-sync", kind="service", grants=(),
                               credential_id="registry_sync", method="anonymous")
"""Who asks the compressor for a consultation's context over the bus (service to service: the
caller was authorized by the gateway already; the compressor does not re-check)."""


def _assembled_context(nc: Any, fallback: Callable[[str, str, int], Any]
                       ) -> Callable[[str, str, int], Any]:
    """The consultation's context from the compressor's context assembly (purpose
    ``factual_recall``: every protected span kept), with the receipts of its compressed pieces;
    the search layer when no compressor answers in time."""
    op = OPERATIONS["context"]

    async def context(ns: str, query: str, tokens: int) -> ContextPiece:
        request = AssembleContext(task=query[:4096], purpose="factual_recall",
                                  budget=max(0, min(tokens, MAX_CONTEXT_BUDGET)),
                                  k=_CONTEXT_HITS)
        view: ContextView | None = None
        try:
            async with asyncio.timeout(_CONTEXT_WAIT_S):
                async for final, reply in request_operation(nc, op, _CONSULTING, ns, request,
                                                            idle_timeout_s=_CONTEXT_WAIT_S):
                    if final:
                        view = reply
                        break
        except (MnemosError, TimeoutError, OSError) as exc:
            log.info("context_from_search", reason=f"{type(exc).__name__}: {exc}"[:200])
            piece: ContextPiece = await fallback(ns, query, tokens)
            return piece
        if view is None:
            return await fallback(ns, query, tokens)  # type: ignore[no-any-return]
        ids = tuple(p.memory_id for p in view.pieces)
        return ContextPiece(text=view.text, memory_ids=ids,
                            receipts=tuple(r.receipt_id for r in view.receipts),
                            source="assembly" if ids else "none")

    return context


def _handlers(service: RegistryService) -> dict[str, OperationHandler]:
    async def route(principal: Principal, ns: str, request: Any, send: SendProgress) -> Any:
        return await service.route(ns, request)

    async def consult(principal: Principal, ns: str, request: Any, send: SendProgress) -> Any:
        # A consultation may outlast the gateway's idle wait (slow models, failovers): a
        # heartbeat tells it the consultation is alive.
        work = asyncio.create_task(service.consult(ns, Actor(principal=principal.name),
                                                   request))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=_HEARTBEAT_S)
                if not work.done():
                    await send({"consultation": "running"})
            return work.result()
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work

    async def sync(principal: Principal, ns: str, request: Any, send: SendProgress) -> Any:
        return await service.sync_now(request)

    return {"route": route, "consult": consult, "registry_sync": sync}


async def _supervise(service: RegistryService, server: OperationServer,
                     stop: asyncio.Event) -> None:
    """Answer operations while active and caught up; run the timers then."""
    listening = False
    idle = service.settings.idle_reason() is not None
    try:
        while not stop.is_set():
            if service.ready and not listening:
                await server.start()
                listening = True
                log.info("registry_ready", folded_seq=service.folded.seq,
                         models=len(service.folded.state.models))
            elif not service.folded.active and listening:
                await server.stop()
                listening = False
            if service.ready and not idle:
                try:
                    await service.tick()
                except MnemosError as exc:
                    log.warning("registry_tick_failed", error=exc.message)
                except Exception:
                    log.exception("registry_tick_crashed")
            await sleep_or_stop(stop, service.settings.tick_check_s)
    finally:
        if listening:
            await server.stop()


async def run(config: Config, stop: asyncio.Event, *, registry: RegistrySyncConfig | None = None,
              clock: Callable[[], datetime] | None = None,
              embedder: Embedder | None = None) -> None:
    """Run until ``stop`` is set. ``registry``, ``clock`` and ``embedder`` are for tests
    (a configuration object, a clock they advance, a shared embedder)."""
    if config.database_url is None:
        raise Unavailable("registry_sync needs MNEMOS_DATABASE_URL (its leadership lock and "
                          "the consultations' memory context)")
    path = registry_config_path(config)
    settings = registry or load_registry_config(path)
    if registry is None and path.exists() and any(p.api_key for p in settings.providers) and (
            path.stat().st_mode & 0o077):
        log.warning("registry_config_readable_by_others", path=str(path),
                    fix=f"chmod 600 {path} (it holds provider API keys)")
    reason = settings.idle_reason()
    if reason is not None:
        log.warning("registry_sync_idle", reason=reason)
    else:
        log.info("registry_sync_configured", providers=[p.name for p in settings.providers],
                 leaderboard=settings.leaderboard is not None,
                 provider_interval_s=settings.provider_interval_s,
                 leaderboard_interval_s=settings.leaderboard_interval_s)
    nats_url = config.nats_url or f"nats://127.0.0.1:{config.nats_port}"
    nc = await retry_until_ready("nats", lambda: connect_nats(
        nats_url, "registry_sync", nats_credentials(config)), stop)
    if nc is None:
        return
    lazy = _LazyEmbedder(config, embedder)
    read_models = ReadModels(config, pool_size=2)
    async def lookup(ns: str, consultation_id: str) -> tuple[str, ConsultResult | None] | None:
        if not read_models.ready:
            raise Unavailable("the read models are not ready to check a consultation id")
        async with read_models.connection() as conn:
            return await get_consultation(conn, ns, consultation_id)

    service = RegistryService(settings, nc.jetstream(), embed=lazy.embed,
                              context=_assembled_context(
                                  nc, _search_context(read_models, lazy)), clock=clock,
                              lookup=lookup)
    server = OperationServer(nc, "registry_sync", REGISTRY_OPERATIONS, _handlers(service))
    database_url = config.database_url
    tasks: list[asyncio.Task[Any]] = []
    try:
        streams = await retry_until_ready(
            "the event stream", lambda: await_streams(nc.jetstream(), config), stop)
        if streams is None:
            return
        tasks.append(asyncio.create_task(read_models.open_when_ready(stop)))
        consumer = ConsumerSettings(
            name=CONSUMER_NAME, role="registry_sync", schema=config.db_schema,
            connect=lambda: connect_async(database_url, config.db_schema, autocommit=True),
            batch_size=512)
        tasks.append(asyncio.create_task(_supervise(service, server, stop)))
        folded = await ConsumerRuntime(consumer, RegistryFollower(service), nc).run(stop)
        log.info("registry_sync_stopped", folded_seq=folded)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        await service.aclose()
        with contextlib.suppress(Exception):
            await read_models.close()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()
