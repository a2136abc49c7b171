"""Run the gateway and the projector in-process (as asyncio tasks) for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import nats
from nats.aio.client import Client

from libs.runtime.config import Config
from services.command import main as gateway_main
from services.projector import main as projector_main

__all__ = ["running_gateway"]


async def _wait_ready(http: httpx.AsyncClient, tasks: list[asyncio.Task[None]]) -> None:
    for _ in range(600):
        for task in tasks:
            if task.done():
                task.result()
                raise RuntimeError("a service exited early")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError("gateway not ready")


@asynccontextmanager
async def running_gateway(config: Config) -> AsyncIterator[tuple[httpx.AsyncClient, Client]]:
    """Projector + gateway on ``config``; yields an HTTP client of the gateway and a NATS client."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(projector_main.run(config, stop)),
             asyncio.create_task(gateway_main.run(config, stop))]
    base = f"http://{config.http_host}:{config.http_port}"
    nc = await nats.connect(config.nats_url or "")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            await _wait_ready(http, tasks)
            yield http, nc
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await nc.drain()
