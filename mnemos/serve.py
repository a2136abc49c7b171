"""Run one service in this process until SIGINT/SIGTERM.

A service is a module ``services.<name>.main`` exposing
``async def run(config: Config, stop: asyncio.Event) -> None``, which returns once ``stop`` is set
and it has finished in-flight work.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Awaitable, Callable
from typing import Final

from libs.runtime.config import Config
from libs.runtime.logging import configure_logging, get_logger

__all__ = ["SERVICES", "run_service"]

SERVICES: Final = ("command", "projector", "auditor")
"""Services ``mnemos up`` starts, in start order. Each may also run alone: ``mnemos serve X``."""

log = get_logger(__name__)

ServiceMain = Callable[[Config, asyncio.Event], Awaitable[None]]


def load_service(name: str) -> ServiceMain:
    """The ``run`` coroutine function of service ``name``."""
    module = importlib.import_module(f"services.{name}.main")
    run: ServiceMain = module.run
    return run


async def _serve(name: str, config: Config) -> None:
    if config.metrics_port and name != "command":
        import prometheus_client

        prometheus_client.start_http_server(config.metrics_port, addr=config.http_host)
        log.info("metrics_listening", port=config.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("service_starting", service=name)
    await load_service(name)(config, stop)
    log.info("service_stopped", service=name)


def run_service(name: str, config: Config) -> None:
    """Configure logging and run service ``name`` to completion."""
    configure_logging(config.log_format, config.log_level, service=name)
    asyncio.run(_serve(name, config))
