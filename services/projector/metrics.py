"""Prometheus metrics of the projector (exposed by whoever serves ``/metrics`` in the process)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "CHECKPOINT_SEQ",
    "CONSUMER_PENDING",
    "DEAD_LETTERED",
    "DUPLICATES_SKIPPED",
    "EVENTS_PROJECTED",
    "LEADER",
    "TRANSIENT_ERRORS",
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
CHECKPOINT_SEQ: Final = Gauge(
    "mnemos_projector_checkpoint_seq", "Last stream sequence committed to the read models.",
    ["schema"],
)
CONSUMER_PENDING: Final = Gauge(
    "mnemos_projector_consumer_pending", "Events in the stream not yet delivered (lag).",
    ["schema"],
)
LEADER: Final = Gauge(
    "mnemos_projector_leader", "1 while this instance is the active projector, else 0 (standby).",
    ["schema"],
)
TRANSIENT_ERRORS: Final = Counter(
    "mnemos_projector_transient_errors", "Connection losses and timeouts survived by retrying.",
    ["schema"],
)
BATCH_SECONDS: Final = Histogram(
    "mnemos_projector_batch_seconds", "Time to embed, apply, commit and ack one batch.",
    ["schema"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
