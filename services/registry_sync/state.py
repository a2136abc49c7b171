"""The registry as a fold over its events (pure): one small function per payload type.

The sync diff reads this state and produces payloads; the lead's projection folds the same
payloads into tables, so what a sync decided and what the read model shows cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from libs.events.registry import (
    Liveness,
    ModelChangedData,
    ModelListedData,
    ModelRecordData,
    ModelRestoredData,
    ModelRetiredData,
    ModelSuspectData,
    ProviderSyncedData,
    ProviderSyncFailedData,
    RankingEntryData,
    RankingPublishedData,
)

__all__ = ["EMPTY", "ModelState", "RegistryPayload", "RegistryState", "fold"]

RegistryPayload = (
    ModelListedData | ModelChangedData | ModelSuspectData | ModelRetiredData
    | ModelRestoredData | ProviderSyncedData | ProviderSyncFailedData | RankingPublishedData
)
"""Every payload the registry's sync produces."""


class ModelState(msgspec.Struct, frozen=True, kw_only=True):
    """One registry entry: its record, liveness, and the latest ranking that matched it.

    ``suspect_reason`` is why it is suspect; ``stale`` is set while its provider's last sync
    failed (its facts may be out of date, its liveness is left alone).
    """

    record: ModelRecordData
    liveness: Liveness = "active"
    missing_syncs: int = 0
    suspect_reason: str | None = None
    retired_reason: str | None = None
    stale: bool = False
    ranking: RankingEntryData | None = None


class RegistryState(msgspec.Struct, frozen=True, kw_only=True):
    """Every model by key, and the last publication of each ranking ``source/category``."""

    models: dict[str, ModelState] = {}
    rankings: dict[str, RankingPublishedData] = {}

    def of_provider(self, provider: str) -> list[ModelState]:
        """The provider's models, by key."""
        return [m for k, m in sorted(self.models.items()) if m.record.provider == provider]


EMPTY: Final = RegistryState()
"""The registry before any event."""

_Models = dict[str, ModelState]


def _listed(models: _Models, data: ModelListedData) -> None:
    models[data.record.key] = ModelState(record=data.record)


def _changed(models: _Models, data: ModelChangedData) -> None:
    state = models[data.key]
    updates = {c.field: c.new for c in data.changes}
    sources = dict(state.record.sources) | {c.field: c.source for c in data.changes}
    record = msgspec.structs.replace(state.record, **updates, sources=sources)
    models[data.key] = msgspec.structs.replace(state, record=record)


def _suspect(models: _Models, data: ModelSuspectData) -> None:
    models[data.key] = msgspec.structs.replace(
        models[data.key], liveness="suspect", missing_syncs=data.missing_syncs,
        suspect_reason=data.reason)


def _retired(models: _Models, data: ModelRetiredData) -> None:
    models[data.key] = msgspec.structs.replace(
        models[data.key], liveness="retired", missing_syncs=data.missing_syncs,
        retired_reason=data.reason, suspect_reason=None)


def _restored(models: _Models, data: ModelRestoredData) -> None:
    models[data.key] = msgspec.structs.replace(
        models[data.key], liveness="active", missing_syncs=0, suspect_reason=None,
        retired_reason=None)


def _synced(models: _Models, data: ProviderSyncedData) -> None:
    for key, state in models.items():
        if state.stale and state.record.provider == data.provider:
            models[key] = msgspec.structs.replace(state, stale=False)


def _failed(models: _Models, data: ProviderSyncFailedData) -> None:
    for key, state in models.items():
        if state.record.provider == data.provider and not state.stale:
            models[key] = msgspec.structs.replace(state, stale=True)


def _ranked(models: _Models, data: RankingPublishedData) -> None:
    entries = {e.key: e for e in data.entries}
    for key, state in models.items():
        entry = entries.get(key)
        if entry != state.ranking:
            models[key] = msgspec.structs.replace(state, ranking=entry)


_APPLY: Final[dict[type, Callable[[_Models, object], None]]] = {
    ModelListedData: _listed,  # type: ignore[dict-item]
    ModelChangedData: _changed,  # type: ignore[dict-item]
    ModelSuspectData: _suspect,  # type: ignore[dict-item]
    ModelRetiredData: _retired,  # type: ignore[dict-item]
    ModelRestoredData: _restored,  # type: ignore[dict-item]
    ProviderSyncedData: _synced,  # type: ignore[dict-item]
    ProviderSyncFailedData: _failed,  # type: ignore[dict-item]
    RankingPublishedData: _ranked,  # type: ignore[dict-item]
}


def fold(state: RegistryState, payloads: Iterable[RegistryPayload]) -> RegistryState:
    """The state after ``payloads``, in order (``state`` itself is not changed)."""
    models = dict(state.models)
    rankings = dict(state.rankings)
    for payload in payloads:
        _APPLY[type(payload)](models, payload)
        if isinstance(payload, RankingPublishedData):
            rankings[f"{payload.source}/{payload.category}"] = payload
    return RegistryState(models=models, rankings=rankings)
