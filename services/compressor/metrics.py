"""Prometheus metrics of the compressor (``/metrics`` on its port under ``mnemos up``)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

__all__ = ["ENGINE_WINS", "ON_WRITE_LAG", "OUTCOMES"]

OUTCOMES: Final = Counter(
    "mnemos_compressor_versions",
    "Version events handled, by outcome (published, duplicate, already_recorded, too_short, "
    "no_winner, dead_lettered).", ["outcome"],
)
ENGINE_WINS: Final = Counter(
    "mnemos_compressor_engine_wins", "Published compressions by winning engine.", ["engine"],
)
ON_WRITE_LAG: Final = Histogram(
    "mnemos_compressor_on_write_lag_seconds",
    "From the version event's time to its offline compression being stored in the stream.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
