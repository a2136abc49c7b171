"""Prometheus metrics of the projector (exposed by whoever serves ``/metrics`` in the process)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

__all__ = [
    "DEAD_LETTERED",
    "DUPLICATES_SKIPPED",
    "EVENTS_PROJECTED",
]

EVENTS_PROJECTED: Final = Counter(
    "mnemos_projector_events_projected", "Events applied to the read models.", ["schema", "type"]
)
DEAD_LETTERED: Final = Counter(
    "mnemos_projector_dead_lettered", "Poison events moved to the dead-letter stream.", ["schema"]
)
DUPLICATES_SKIPPED: Final = Counter(
    "mnemos_projector_duplicates_skipped",
    "Events whose id was already projected at another sequence (skipped).", ["schema"],
)
