"""Run registry_sync in-process against local replay providers (tests and conformance)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from libs.embeddings import MiniLMOnnxEmbedder
from libs.llm import ProviderConfig
from libs.llm.retry import RetryPolicy
from libs.llm.transport import CallPolicy
from libs.runtime.config import Config
from services.registry_sync.config import RegistrySyncConfig
from tests.support_http import Recorded, ReplayServer

__all__ = ["chat_reply", "models_body", "one_provider", "running_registry"]


def models_body(*ids: str) -> Recorded:
    """An OpenAI-compatible ``GET /v1/models`` answer listing ``ids``."""
    return Recorded.json({"object": "list", "data": [
        {"id": i, "object": "model", "created": 1718000000, "owned_by": "system"} for i in ids]})


def chat_reply(text: str) -> Recorded:
    """An OpenAI-compatible chat completion answering ``text``."""
    return Recorded.json({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                          "choices": [{"index": 0, "message": {"role": "assistant",
                                                               "content": text},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 30, "completion_tokens": 10}})


def one_provider(server: ReplayServer, name: str = "local", model: str = "llama-3.3-70b",
                 answer: str = "Canberra.") -> RegistrySyncConfig:
    """A configuration with one OpenAI-compatible provider served by ``server``."""
    server.add("GET", "/v1/models", models_body(model))
    server.add("POST", "/v1/chat/completions", chat_reply(answer))
    policy = CallPolicy(timeout_s=3.0, retry=RetryPolicy(attempts=1))
    return RegistrySyncConfig(providers=(ProviderConfig(name=name, kind="openai",
                                                        base_url=server.url, policy=policy),),
                              tick_check_s=0.05)


@asynccontextmanager
async def running_registry(config: Config, registry: RegistrySyncConfig,
                           clock: Callable[[], datetime] | None = None
                           ) -> AsyncIterator[asyncio.Task[None]]:
    """registry_sync as a task for the duration of the block."""
    from services.registry_sync.main import run

    stop = asyncio.Event()
    task = asyncio.create_task(run(config, stop, registry=registry, clock=clock,
                                   embedder=MiniLMOnnxEmbedder.shared()))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
