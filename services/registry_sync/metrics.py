"""Prometheus metrics of registry_sync (served on its metrics port by ``mnemos serve``)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CONSULTATIONS",
    "LEADERBOARD_FAILURES",
    "MODELS",
    "PROVIDER_SYNC_FAILURES",
    "REGISTRY_EVENTS_PUBLISHED",
    "SYNC_SECONDS",
]

MODELS: Final = Gauge(
    "mnemos_registry_models", "Registry models by liveness (the service's fold).", ["liveness"])
SYNC_SECONDS: Final = Histogram(
    "mnemos_registry_sync_seconds", "Duration of one sync tick, publication and fold included.",
    ["target"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
REGISTRY_EVENTS_PUBLISHED: Final = Counter(
    "mnemos_registry_events_published", "Registry events published by sync ticks.", ["type"])
PROVIDER_SYNC_FAILURES: Final = Counter(
    "mnemos_registry_provider_sync_failures", "Provider syncs that failed.",
    ["provider", "error_code"])
CONSULTATIONS: Final = Counter(
    "mnemos_consultations", "Consultations by outcome (reached, abstained).", ["outcome"])
LEADERBOARD_FAILURES: Final = Counter(
    "mnemos_registry_leaderboard_failures",
    "Leaderboard fetches that failed (the previous ranking stays in force).", ["source"])
