"""Run the compressor in-process for tests, and wait for its receipts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx

from libs.runtime.config import Config
from services.compressor import main as compressor_main
from services.compressor.service import CompressorSettings
from tests.support.events import CountingEmbedder

__all__ = ["eventually", "receipts", "running_compressor", "settings"]

T = TypeVar("T")
NS = "notes"


def settings(config: Config, **kw: Any) -> CompressorSettings:
    options = {"fetch_wait_s": 0.2, **kw.pop("consumer_options", {})}
    return CompressorSettings(min_tokens=kw.pop("min_tokens", 40), schema=config.db_schema,
                              ack_wait_s=kw.pop("ack_wait_s", 3.0), consumer_options=options,
                              **kw)


@contextlib.asynccontextmanager
async def running_compressor(config: Config, **kw: Any) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    compressor = kw.pop("compressor", None)
    task = asyncio.create_task(compressor_main.run(
        config, stop, compressor=compressor, settings=settings(config, **kw),
        embedder=CountingEmbedder()))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 60.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.1)


async def receipts(http: httpx.AsyncClient, memory_id: str,
                   after_seq: int | None = None, ns: str = NS) -> list[dict[str, Any]]:
    params = {"after_seq": after_seq} if after_seq else {}
    response = await http.get(f"/v1/{ns}/memories/{memory_id}/receipts", params=params)
    if response.status_code == 503:  # the compressor is still starting
        return []
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["compressions"]
    return found


