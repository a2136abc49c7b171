"""What the reasoning layer's tables must hold, folded in plain Python from its events.

The independent statement of :mod:`libs.readmodel.registry`'s SQL: verification folds the
``registry_events`` rows here and compares ``registry_models``, ``registry_providers``,
``registry_rankings`` and ``registry_consultations`` with the result, naming the row and the
field that differ. Pure; no I/O. Column values are what a ``json`` column gives back (the
storable canonical JSON, decoded).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from libs.events import Event, storable, storable_json
from libs.events.model import (
    ConsensusAbstained,
    ConsensusReached,
    ConsultationAnswerReceived,
    ConsultationModelFailed,
    ConsultationStarted,
    ModelChanged,
    ModelListed,
    ModelRestored,
    ModelRetired,
    ModelSuspect,
    ProviderSynced,
    ProviderSyncFailed,
    RankingPublished,
)
from libs.readmodel.registry import record_fields

__all__ = ["ExpectedRegistry", "fold_registry"]


def _json(value: object) -> Any:
    return msgspec.json.decode(storable_json(value))


@dataclass
class ExpectedRegistry:
    """Expected rows by primary key, per table (columns as the tables name them)."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    rankings: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    consultations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _touch(row: dict[str, Any], event: Event, seq: int) -> None:
    row.update(updated_seq=seq, updated_at=event.at)


def _apply(state: ExpectedRegistry, event: Event, seq: int) -> None:
    models = state.models
    if isinstance(event, ModelListed):
        r = event.data.record
        models[r.key] = {
            "key": r.key, "aggregate_id": event.aggregate_id, "provider": r.provider,
            "model_id": r.model_id, "family": r.family, "capabilities": list(r.capabilities),
            "record": _json(record_fields(r)), "sources": _json(dict(r.sources)),
            "liveness": "active", "missing_syncs": 0, "suspect_reason": None,
            "suspect_detail": None, "retired_reason": None, "stale": False, "ranking": None,
            "listed_seq": seq, "updated_seq": seq, "updated_at": event.at}
    elif isinstance(event, ModelChanged):
        row = models[event.data.key]
        for change in event.data.changes:
            row["record"][change.field] = _json(change.new)
            row["sources"][change.field] = change.source
            if change.field == "family" and isinstance(change.new, str):
                row["family"] = change.new
            if change.field == "capabilities" and isinstance(change.new, tuple):
                row["capabilities"] = list(change.new)
        _touch(row, event, seq)
    elif isinstance(event, ModelSuspect):
        row = models[event.data.key]
        row.update(liveness="suspect", missing_syncs=event.data.missing_syncs,
                   suspect_reason=event.data.reason,
                   suspect_detail=None if event.data.detail is None else storable(
                       event.data.detail))
        _touch(row, event, seq)
    elif isinstance(event, ModelRetired):
        row = models[event.data.key]
        row.update(liveness="retired", missing_syncs=event.data.missing_syncs,
                   retired_reason=event.data.reason, suspect_reason=None, suspect_detail=None)
        _touch(row, event, seq)
    elif isinstance(event, ModelRestored):
        row = models[event.data.key]
        row.update(liveness="active", missing_syncs=0, suspect_reason=None,
                   suspect_detail=None, retired_reason=None)
        _touch(row, event, seq)
    elif isinstance(event, ProviderSynced | ProviderSyncFailed):
        _provider(state, event, seq)
    elif isinstance(event, RankingPublished):
        entries = {e.key: _json(e) for e in event.data.entries}
        for key, row in models.items():
            row["ranking"] = entries.get(key)
        state.rankings[(event.data.source, event.data.category)] = {
            "source": event.data.source, "category": event.data.category, "seq": seq,
            "at": event.at, "data": _json(event.data)}
    else:
        _consultation(state, event, seq)


def _provider(state: ExpectedRegistry, event: ProviderSynced | ProviderSyncFailed,
              seq: int) -> None:
    ok = isinstance(event, ProviderSynced)
    for row in state.models.values():
        if row["provider"] == event.data.provider:
            row["stale"] = not ok
    row = state.providers.setdefault(event.data.provider, {
        "provider": event.data.provider, "last_synced_seq": None, "last_synced_at": None,
        "last_failed_seq": None, "last_failed_at": None, "last_error": None,
        "last_sync": None})
    row.update(last_seq=seq, last_outcome="synced" if ok else "failed")
    if ok:
        row.update(last_synced_seq=seq, last_synced_at=event.at, last_sync=_json(event.data))
    else:
        row.update(last_failed_seq=seq, last_failed_at=event.at, last_error=_json(event.data))


def _consultation(state: ExpectedRegistry, event: Event, seq: int) -> None:
    key = (event.ns, event.aggregate_id)
    if isinstance(event, ConsultationStarted):
        d = event.data
        state.consultations[key] = {
            "ns": event.ns, "consultation_id": event.aggregate_id, "status": "running",
            "prompt": storable(d.prompt), "profile": d.profile, "planned": list(d.planned),
            "answers": 0, "failures": 0, "result": None, "started_seq": seq,
            "started_at": event.at, "updated_seq": seq, "updated_at": event.at}
        return
    row = state.consultations[key]
    if isinstance(event, ConsultationAnswerReceived):
        row["answers"] += 1
    elif isinstance(event, ConsultationModelFailed):
        row["failures"] += 1
    elif isinstance(event, ConsensusReached | ConsensusAbstained):
        row["status"] = "reached" if isinstance(event, ConsensusReached) else "abstained"
        row["result"] = _json(event.data)
    _touch(row, event, seq)


def fold_registry(events: Iterable[tuple[Event, int]]) -> tuple[ExpectedRegistry, list[str]]:
    """The expected rows after ``(event, seq)`` in stream order, and the events that could
    not apply (a model or consultation the fold does not hold), described."""
    state = ExpectedRegistry()
    problems: list[str] = []
    for event, seq in events:
        try:
            _apply(state, event, seq)
        except KeyError as missing:
            problems.append(f"{type(event).__name__} at seq {seq} names {missing} which no "
                            "earlier event created")
    return state, problems
