"""Run the gateway and the projector in-process (as asyncio tasks) for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import nats
from nats.aio.client import Client

from libs.runtime.config import Config
from services.command import main as gateway_main
from services.projector import main as projector_main

__all__ = ["running_gateway", "running_gateway_alone"]


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


@asynccontextmanager
async def running_gateway_alone(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway alone (no projector) on ``config``, whatever broker credentials and TLS it
    names; yields an HTTP client of it once it listens (readiness is the test's to check)."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway_main.run(config, stop))
    base = f"http://{config.http_host}:{config.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                if task.done():
                    task.result()
                    raise AssertionError("the gateway exited early")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the gateway did not listen within 60 s"
                await asyncio.sleep(0.1)
            yield http
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
