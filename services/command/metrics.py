"""Prometheus metrics of the gateway (registered once per process in the default registry)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Final, TypeVar

from prometheus_client import Counter, Histogram

from libs.events.errors import MnemosError

__all__ = ["COMMANDS_HANDLED", "COMMAND_SECONDS", "QUERIES", "QUERY_SECONDS", "observed_query"]

T = TypeVar("T")

COMMANDS_HANDLED: Final = Counter(
    "mnemos_commands_total", "Commands handled, by command name and outcome "
    "(ok, duplicate, or the error code).", ["command", "outcome"],
)
COMMAND_SECONDS: Final = Histogram(
    "mnemos_command_seconds", "Time to handle a command, by command name.", ["command"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
QUERIES: Final = Counter(
    "mnemos_queries_total", "Queries served, by query name and outcome.", ["query", "outcome"],
)
QUERY_SECONDS: Final = Histogram(
    "mnemos_query_seconds", "Time to serve a query (including read-your-writes waits).",
    ["query"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


async def observed_query(name: str, work: Awaitable[T]) -> T:
    """Await ``work``, counting it under query ``name`` by outcome (ok or the error code)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await work
        outcome = "ok"
        return result
    except MnemosError as exc:
        outcome = exc.code
        raise
    finally:
        QUERIES.labels(name, outcome).inc()
        QUERY_SECONDS.labels(name).observe(time.perf_counter() - started)
