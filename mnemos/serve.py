"""Run one service in this process until SIGINT/SIGTERM.

A service is a module ``services.<name>.main`` exposing
``async def run(config: Config, stop: asyncio.Event) -> None``, which returns once ``stop`` is set
and it has finished in-flight work.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Final

from libs.runtime.config import Config, with_identity
from libs.runtime.health import serve_health
from libs.runtime.logging import configure_logging, get_logger

__all__ = ["SERVICES", "run_service"]

SERVICES: Final = ("command", "projector", "auditor", "compressor", "registry_sync")
STOP_GRACE_S: Final = 15.0
"""After SIGTERM a service finishes its work in flight within this long, or is cancelled."""
CANCEL_GRACE_S: Final = 5.0
"""... and a cancelled service that still does not return is ended (exit code 3)."""
"""Services ``mnemos up`` starts, in start order. Each may also run alone: ``mnemos serve X``."""

log = get_logger(__name__)

ServiceMain = Callable[[Config, asyncio.Event], Awaitable[None]]


def load_service(name: str) -> ServiceMain:
    """The ``run`` coroutine function of service ``name``."""
    module = importlib.import_module(f"services.{name}.main")
    run: ServiceMain = module.run
    return run


async def _until(stop: asyncio.Event) -> None:
    await stop.wait()


async def _serve(name: str, config: Config) -> None:
    if config.metrics_port and name != "command":
        # The gateway serves these on its HTTP port; every other service on its metrics port.
        serve_health(config.metrics_port, config.http_host)
        log.info("metrics_listening", port=config.metrics_port,
                 paths=["/metrics", "/healthz", "/readyz"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("service_starting", service=name)
    service: asyncio.Future[None] = asyncio.ensure_future(load_service(name)(config, stop))
    stopping: asyncio.Future[None] = asyncio.ensure_future(_until(stop))
    await asyncio.wait([service, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not service.done():
        # Stopped: the service finishes what is in flight, but never for longer than the grace.
        done, _ = await asyncio.wait({service}, timeout=STOP_GRACE_S)
        if not done:
            log.error("service_stop_overdue", service=name, grace_s=STOP_GRACE_S,
                      action="cancelling")
            service.cancel()
            done, _ = await asyncio.wait({service}, timeout=CANCEL_GRACE_S)
            if not done:
                log.error("service_stop_forced", service=name)
                os._exit(3)
    stopping.cancel()
    if not service.cancelled():
        service.result()
    log.info("service_stopped", service=name)


IDENTITIES: Final = {"command": "gateway"}
"""Broker identity of each service whose identity is not its name."""


def run_service(name: str, config: Config) -> None:
    """Configure logging and run service ``name`` (as its own broker identity) to completion."""
    configure_logging(config.log_format, config.log_level, service=name)
    asyncio.run(_serve(name, with_identity(config, IDENTITIES.get(name, name))))
