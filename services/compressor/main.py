"""The compressor service: ``mnemos serve compressor``.

Waits for Postgres (the read models the projector migrates, ``memory_compressions`` included)
and NATS, answers its queries on the bus (``receipts``, ``context``) and compresses every new
version on the shared consumer runtime (:mod:`services.compressor.service`); several instances
share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from libs.embeddings import Embedder, build_embedder
from libs.events import EVENTS_STREAM, Unavailable
from libs.llm import CallPolicy, ProviderConfig, build_chat_client, build_http
from libs.llm import ChatClient as ProviderChat
from libs.llm import ChatMessage as ProviderMessage
from libs.readmodel.pool import ReadModels
from libs.readmodel.search import SearchService
from libs.runtime.bus import OperationServer
from libs.runtime.config import Config
from libs.runtime.database import connect_async
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import await_streams, connect_nats, nats_credentials
from libs.runtime.startup import retry_until_ready
from services.compressor.compressor import Compressor
from services.compressor.engines.base import AsyncEngine
from services.compressor.engines.llm import ChatMessage, ChatReply, LlmEngine
from services.compressor.operations import (
    COMPRESSOR_OPERATIONS,
    ContextAssembler,
    compressor_handlers,
)
from services.compressor.service import CompressorSettings, compressor_runtime

__all__ = ["build_compressor", "run"]

log = get_logger(__name__)


class _ProviderChat:
    """The LLM engine's chat protocol over a :mod:`libs.llm` client (timeouts, retries,
    circuit breaker)."""

    def __init__(self, client: ProviderChat) -> None:
        self._client = client

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                       timeout_s: float) -> ChatReply:
        reply = await self._client.complete(
            [ProviderMessage(role=m.role, content=m.content) for m in messages],
            max_tokens=max_tokens, timeout_s=timeout_s)
        return ChatReply(text=reply.text, model=reply.model, input_tokens=reply.input_tokens,
                         output_tokens=reply.output_tokens)


def build_compressor(config: Config) -> Compressor:
    """The offline engines, plus the LLM engine when ``compressor_llm_url`` is set."""
    llm: list[AsyncEngine] = []
    if config.compressor_llm_url:
        timeout = config.compressor_llm_timeout_s
        provider = ProviderConfig(
            name="compressor-llm", kind="openai", base_url=config.compressor_llm_url,
            api_key=config.compressor_llm_api_key,
            policy=CallPolicy(timeout_s=timeout, connect_timeout_s=min(5.0, timeout)))
        http = build_http(provider, breaker_clock=time.monotonic)
        client = build_chat_client(provider, http, config.compressor_llm_model)
        llm.append(LlmEngine(_ProviderChat(client), config.compressor_llm_model, timeout))
    return Compressor(llm_engines=llm)


async def _compressions_table(url: str, schema: str) -> bool:
    conn = await connect_async(url, schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT to_regclass('memory_compressions') AS t")
        row = await cur.fetchone()
    finally:
        await conn.close()
    if not row or row["t"] is None:
        raise Unavailable("the read models have no memory_compressions table yet "
                          "(the projector applies migration 0008)")
    return True


async def run(config: Config, stop: asyncio.Event, *, compressor: Compressor | None = None,
              settings: CompressorSettings | None = None,
              embedder: Embedder | None = None) -> None:
    """Run the compressor until ``stop`` is set (the batch in flight is finished first).

    ``compressor``, ``settings`` and ``embedder`` exist for tests (fake engines, short waits).
    """
    if config.database_url is None:
        raise Unavailable("the compressor needs MNEMOS_DATABASE_URL")
    url = config.database_url
    nats_url = config.nats_url or f"nats://127.0.0.1:{config.nats_port}"
    compressor = compressor or build_compressor(config)
    settings = settings or CompressorSettings(min_tokens=config.compress_min_tokens,
                                              schema=config.db_schema,
                                              ack_wait_s=config.compressor_ack_wait_s)
    nc = await retry_until_ready("nats", lambda: connect_nats(
        nats_url, "mnemos-compressor", nats_credentials(config)), stop)
    if nc is None:
        return

    async def stream_last_seq() -> int:
        info = await nc.jetstream().stream_info(EVENTS_STREAM)
        return int(info.state.last_seq or 0)

    read_models = ReadModels(config, pool_size=4, stream_last_seq=stream_last_seq)
    try:
        await read_models.open_when_ready(stop)
        if stop.is_set() or await retry_until_ready(
                "the read models (migration 0008)",
                lambda: _compressions_table(url, config.db_schema), stop) is None:
            return
        await _serve(config, stop, nc, compressor, settings, read_models, embedder)
    finally:
        await read_models.close()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await nc.close()


async def _serve(config: Config, stop: asyncio.Event, nc: Any, compressor: Compressor,
                 settings: CompressorSettings, read_models: ReadModels,
                 embedder: Embedder | None) -> None:
    search = SearchService(read_models, (lambda: embedder) if embedder is not None
                           else (lambda: build_embedder(config)),
                           ef_search=config.hnsw_ef_search)
    assembler = ContextAssembler(read_models, search, compressor.tokens)
    server = OperationServer(nc, "compressor", COMPRESSOR_OPERATIONS,
                             compressor_handlers(assembler))
    try:
        streams = await retry_until_ready(
            "the event stream", lambda: await_streams(nc.jetstream(), config), stop)
        if streams is None:
            return
        await server.start()
        log.info("compressor_started", min_tokens=settings.min_tokens,
                 engines=[e.name for e in compressor.engines]
                 + [e.name for e in compressor.llm_engines])
        url = config.database_url or ""

        def connect() -> Any:
            return connect_async(url, config.db_schema, autocommit=True)

        await compressor_runtime(settings, nc, compressor, connect).run(stop)
        log.info("compressor_stopped")
    finally:
        await server.stop()
