"""Prometheus metrics of every durable consumer, labelled by consumer and schema."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "CHECKPOINT_SEQ",
    "EVENTS_HANDLED",
    "LAG_SECONDS",
    "LEADER",
    "PENDING",
    "STALLS",
    "TRANSIENT_ERRORS",
]

_LABELS: Final = ["consumer", "schema"]

CHECKPOINT_SEQ: Final = Gauge(
    "mnemos_consumer_checkpoint_seq", "Last stream sequence the consumer committed.", _LABELS)
PENDING: Final = Gauge(
    "mnemos_consumer_pending", "Events in the stream after the checkpoint (lag).", _LABELS)
LAG_SECONDS: Final = Gauge(
    "mnemos_consumer_lag_seconds",
    "Age of the oldest event the consumer has not committed yet: now minus the time the stream "
    "stored the first message it holds uncommitted (pulled, being prepared or applied); 0 when "
    "its last batch left nothing pending and it holds nothing. For the projector this is the "
    "projection lag: how stale the read models are, in seconds.", _LABELS)
LEADER: Final = Gauge(
    "mnemos_consumer_leader", "1 while this instance is the active one, else 0 (standby).",
    _LABELS)
EVENTS_HANDLED: Final = Counter(
    "mnemos_consumer_events", "Stream messages committed by the consumer.", _LABELS)
TRANSIENT_ERRORS: Final = Counter(
    "mnemos_consumer_transient_errors", "Connection losses and timeouts survived by retrying.",
    _LABELS)
STALLS: Final = Counter(
    "mnemos_consumer_stalls", "Times the watchdog found no progress while the stream grew, and "
    "restarted the consumer.", _LABELS)
BATCH_SECONDS: Final = Histogram(
    "mnemos_consumer_batch_seconds", "Time to apply, commit and acknowledge one batch.", _LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
