"""Start-up waits: every service waits (and says what for) until NATS and Postgres answer,
instead of exiting when one of them is not up yet."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from libs.consumer.contract import is_transient
from libs.consumer.leadership import sleep_or_stop
from libs.runtime.logging import get_logger

__all__ = ["retry_until_ready"]

log = get_logger(__name__)

T = TypeVar("T")


async def retry_until_ready(what: str, action: Callable[[], Awaitable[T]], stop: asyncio.Event,
                            first_s: float = 0.25, max_s: float = 5.0) -> T | None:
    """``await action()`` until it succeeds (its result) or ``stop`` is set (None), backing off
    on transient failures and logging ``waiting_for`` with ``what`` each time."""
    delay = first_s
    while not stop.is_set():
        try:
            return await action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("waiting_for", what=what, in_s=delay,
                        error=f"{type(exc).__name__}: {exc}".strip()[:200])
        await sleep_or_stop(stop, delay)
        delay = min(delay * 2, max_s)
    return None
