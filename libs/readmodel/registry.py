"""Projections of the reasoning layer's events (migration 0009): pure, event -> SQL.

The same meaning, folded in plain Python, is :mod:`libs.readmodel.registry_expected`
(verification compares the two). Every registry and consultation event also becomes one
``registry_events`` row (the sync log and each consultation's steps). Values are stored as
canonical JSON text in ``json`` columns so numbers keep their exact spelling; a field diff is
merged key by key with ``metadata_merge`` (migration 0006), which keeps keys in byte order, as
canonical JSON does.

A registry event on a model the read model does not hold (changed before listed) contradicts
it: the statement expects one row and the event is dead-lettered, never half applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

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
from libs.events.registry import (
    AGGREGATE_CONSULTATION,
    AGGREGATE_MODEL,
    AGGREGATE_PROVIDER,
    AGGREGATE_RANKING,
    ModelRecordData,
)
from libs.readmodel.statement import Statement

__all__ = [
    "RECORD_IDENTITY",
    "REGISTRY_AGGREGATES",
    "REGISTRY_PROJECTIONS",
    "project_registry",
    "record_fields",
]

RECORD_IDENTITY: Final = ("key", "provider", "model_id", "sources")
"""Record fields kept in their own columns, not in ``registry_models.record``."""

REGISTRY_AGGREGATES: Final[dict[type, str]] = {
    ModelListed: AGGREGATE_MODEL, ModelChanged: AGGREGATE_MODEL, ModelSuspect: AGGREGATE_MODEL,
    ModelRetired: AGGREGATE_MODEL, ModelRestored: AGGREGATE_MODEL,
    ProviderSynced: AGGREGATE_PROVIDER, ProviderSyncFailed: AGGREGATE_PROVIDER,
    RankingPublished: AGGREGATE_RANKING,
    ConsultationStarted: AGGREGATE_CONSULTATION, ConsultationAnswerReceived: AGGREGATE_CONSULTATION,
    ConsultationModelFailed: AGGREGATE_CONSULTATION, ConsensusReached: AGGREGATE_CONSULTATION,
    ConsensusAbstained: AGGREGATE_CONSULTATION,
}
"""The aggregate each projected registry event must be stored under."""


def record_fields(record: ModelRecordData) -> dict[str, Any]:
    """The catalogue fields of a record as ``registry_models.record`` holds them."""
    fields = msgspec.to_builtins(record)
    for name in RECORD_IDENTITY:
        fields.pop(name)
    return dict(fields)


def _tag(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def _log(event: Event, seq: int) -> Statement:
    return Statement(
        "INSERT INTO registry_events (seq, event_id, ns, aggregate, aggregate_id, type, schema,"
        " actor, command_id, at, data) VALUES (%(seq)s, %(event_id)s, %(ns)s, %(aggregate)s,"
        " %(aggregate_id)s, %(type)s, %(schema)s, %(actor)s::json, %(command_id)s, %(at)s,"
        " %(data)s::json)",
        {"seq": seq, "event_id": event.id, "ns": event.ns, "aggregate": event.aggregate,
         "aggregate_id": event.aggregate_id, "type": _tag(event), "schema": event.schema,
         "actor": storable_json(event.actor), "command_id": event.command_id, "at": event.at,
         "data": storable_json(event.data)})


def _model(event: Event, seq: int, key: str) -> dict[str, Any]:
    return {"key": key, "seq": seq, "at": event.at}


_NO_MODEL: Final = "registry has no model {key}"


def _listed(event: ModelListed, seq: int) -> list[Statement]:
    record = event.data.record
    params = _model(event, seq, record.key) | {
        "aggregate_id": event.aggregate_id, "provider": record.provider,
        "model_id": record.model_id, "family": record.family,
        "capabilities": list(record.capabilities),
        "record": storable_json(record_fields(record)),
        "sources": storable_json(dict(record.sources))}
    # Listed again (only after a replayed history of a removed model): a fresh entry.
    return [Statement(
        "INSERT INTO registry_models (key, aggregate_id, provider, model_id, family,"
        " capabilities, record, sources, liveness, missing_syncs, stale, listed_seq,"
        " updated_seq, updated_at) VALUES (%(key)s, %(aggregate_id)s, %(provider)s,"
        " %(model_id)s, %(family)s, %(capabilities)s, %(record)s::json, %(sources)s::json,"
        " 'active', 0, false, %(seq)s, %(seq)s, %(at)s) ON CONFLICT (key) DO UPDATE SET"
        " family = excluded.family, capabilities = excluded.capabilities,"
        " record = excluded.record, sources = excluded.sources, liveness = 'active',"
        " missing_syncs = 0, suspect_reason = NULL, suspect_detail = NULL,"
        " retired_reason = NULL, stale = false, ranking = NULL, listed_seq = excluded.listed_seq,"
        " updated_seq = excluded.updated_seq, updated_at = excluded.updated_at",
        params)]


def _changed(event: ModelChanged, seq: int) -> list[Statement]:
    changes = {c.field: c.new for c in event.data.changes}
    family = changes.get("family")
    capabilities = changes.get("capabilities")
    params = _model(event, seq, event.data.key) | {
        "patch": storable_json(changes),
        "sources": storable_json({c.field: c.source for c in event.data.changes}),
        "family": family if isinstance(family, str) else None,
        "capabilities": list(capabilities) if isinstance(capabilities, tuple) else None}
    return [Statement(
        "UPDATE registry_models SET record = metadata_merge(record, %(patch)s::json, '{}'),"
        " sources = metadata_merge(sources, %(sources)s::json, '{}'),"
        " family = coalesce(%(family)s, family),"
        " capabilities = coalesce(%(capabilities)s::text[], capabilities),"
        " updated_seq = %(seq)s, updated_at = %(at)s WHERE key = %(key)s",
        params, expect_rows=1, error=_NO_MODEL)]


def _suspect(event: ModelSuspect, seq: int) -> list[Statement]:
    d = event.data
    params = _model(event, seq, d.key) | {
        "missing": d.missing_syncs, "reason": d.reason,
        "detail": None if d.detail is None else storable(d.detail)}
    return [Statement(
        "UPDATE registry_models SET liveness = 'suspect', missing_syncs = %(missing)s,"
        " suspect_reason = %(reason)s, suspect_detail = %(detail)s, updated_seq = %(seq)s,"
        " updated_at = %(at)s WHERE key = %(key)s", params, expect_rows=1, error=_NO_MODEL)]


def _retired(event: ModelRetired, seq: int) -> list[Statement]:
    d = event.data
    params = _model(event, seq, d.key) | {"missing": d.missing_syncs, "reason": d.reason}
    return [Statement(
        "UPDATE registry_models SET liveness = 'retired', missing_syncs = %(missing)s,"
        " retired_reason = %(reason)s, suspect_reason = NULL, suspect_detail = NULL,"
        " updated_seq = %(seq)s, updated_at = %(at)s WHERE key = %(key)s",
        params, expect_rows=1, error=_NO_MODEL)]


def _restored(event: ModelRestored, seq: int) -> list[Statement]:
    params = _model(event, seq, event.data.key)
    return [Statement(
        "UPDATE registry_models SET liveness = 'active', missing_syncs = 0,"
        " suspect_reason = NULL, suspect_detail = NULL, retired_reason = NULL,"
        " updated_seq = %(seq)s, updated_at = %(at)s WHERE key = %(key)s",
        params, expect_rows=1, error=_NO_MODEL)]


def _provider(event: ProviderSynced | ProviderSyncFailed, seq: int, ok: bool) -> Statement:
    params = {"provider": event.data.provider, "seq": seq, "at": event.at,
              "data": storable_json(event.data)}
    if ok:
        return Statement(
            "INSERT INTO registry_providers (provider, last_seq, last_outcome, last_synced_seq,"
            " last_synced_at, last_sync) VALUES (%(provider)s, %(seq)s, 'synced', %(seq)s,"
            " %(at)s, %(data)s::json) ON CONFLICT (provider) DO UPDATE SET"
            " last_seq = excluded.last_seq, last_outcome = 'synced',"
            " last_synced_seq = excluded.last_synced_seq,"
            " last_synced_at = excluded.last_synced_at, last_sync = excluded.last_sync",
            params)
    return Statement(
        "INSERT INTO registry_providers (provider, last_seq, last_outcome, last_failed_seq,"
        " last_failed_at, last_error) VALUES (%(provider)s, %(seq)s, 'failed', %(seq)s,"
        " %(at)s, %(data)s::json) ON CONFLICT (provider) DO UPDATE SET"
        " last_seq = excluded.last_seq, last_outcome = 'failed',"
        " last_failed_seq = excluded.last_failed_seq,"
        " last_failed_at = excluded.last_failed_at, last_error = excluded.last_error",
        params)


def _synced(event: ProviderSynced, seq: int) -> list[Statement]:
    return [Statement("UPDATE registry_models SET stale = false"
                      " WHERE provider = %(provider)s AND stale",
                      {"provider": event.data.provider}),
            _provider(event, seq, True)]


def _sync_failed(event: ProviderSyncFailed, seq: int) -> list[Statement]:
    return [Statement("UPDATE registry_models SET stale = true"
                      " WHERE provider = %(provider)s AND NOT stale",
                      {"provider": event.data.provider}),
            _provider(event, seq, False)]


def _ranked(event: RankingPublished, seq: int) -> list[Statement]:
    d = event.data
    entries = storable_json(list(d.entries))
    # One statement (so a run of publications applies each in turn): every model gets the
    # entry that matched it, or none.
    return [
        Statement(
            "UPDATE registry_models AS m SET ranking = e.entry FROM ("
            " SELECT k.key, x.entry FROM registry_models AS k"
            " LEFT JOIN json_array_elements(%(entries)s::json) AS x(entry)"
            " ON x.entry->>'key' = k.key) AS e"
            " WHERE m.key = e.key AND (m.ranking IS NOT NULL OR e.entry IS NOT NULL)",
            {"entries": entries}),
        Statement(
            "INSERT INTO registry_rankings (source, category, seq, at, data) VALUES"
            " (%(source)s, %(category)s, %(seq)s, %(at)s, %(data)s::json)"
            " ON CONFLICT (source, category) DO UPDATE SET seq = excluded.seq,"
            " at = excluded.at, data = excluded.data",
            {"source": d.source, "category": d.category, "seq": seq, "at": event.at,
             "data": storable_json(d)}),
    ]


def _consultation(event: Event, seq: int) -> dict[str, Any]:
    return {"ns": event.ns, "id": event.aggregate_id, "seq": seq, "at": event.at}


_NO_CONSULTATION: Final = "no consultation {id} in {ns}"


def _started(event: ConsultationStarted, seq: int) -> list[Statement]:
    d = event.data
    params = _consultation(event, seq) | {"prompt": storable(d.prompt), "profile": d.profile,
                                          "planned": list(d.planned)}
    return [Statement(
        "INSERT INTO registry_consultations (ns, consultation_id, status, prompt, profile,"
        " planned, answers, failures, started_seq, started_at, updated_seq, updated_at)"
        " VALUES (%(ns)s, %(id)s, 'running', %(prompt)s, %(profile)s, %(planned)s, 0, 0,"
        " %(seq)s, %(at)s, %(seq)s, %(at)s)", params)]


def _answered(event: ConsultationAnswerReceived, seq: int) -> list[Statement]:
    return [Statement(
        "UPDATE registry_consultations SET answers = answers + 1, updated_seq = %(seq)s,"
        " updated_at = %(at)s WHERE ns = %(ns)s AND consultation_id = %(id)s",
        _consultation(event, seq), expect_rows=1, error=_NO_CONSULTATION)]


def _call_failed(event: ConsultationModelFailed, seq: int) -> list[Statement]:
    return [Statement(
        "UPDATE registry_consultations SET failures = failures + 1, updated_seq = %(seq)s,"
        " updated_at = %(at)s WHERE ns = %(ns)s AND consultation_id = %(id)s",
        _consultation(event, seq), expect_rows=1, error=_NO_CONSULTATION)]


def _verdict(event: ConsensusReached | ConsensusAbstained, seq: int) -> list[Statement]:
    status = "reached" if isinstance(event, ConsensusReached) else "abstained"
    params = _consultation(event, seq) | {"status": status, "result": storable_json(event.data)}
    return [Statement(
        "UPDATE registry_consultations SET status = %(status)s, result = %(result)s::json,"
        " updated_seq = %(seq)s, updated_at = %(at)s"
        " WHERE ns = %(ns)s AND consultation_id = %(id)s",
        params, expect_rows=1, error=_NO_CONSULTATION)]


_Projection = Callable[[Any, int], list[Statement]]

REGISTRY_PROJECTIONS: Final[dict[type, _Projection]] = {
    ModelListed: _listed, ModelChanged: _changed, ModelSuspect: _suspect,
    ModelRetired: _retired, ModelRestored: _restored, ProviderSynced: _synced,
    ProviderSyncFailed: _sync_failed, RankingPublished: _ranked,
    ConsultationStarted: _started, ConsultationAnswerReceived: _answered,
    ConsultationModelFailed: _call_failed, ConsensusReached: _verdict,
    ConsensusAbstained: _verdict,
}
"""Projection of every registry and consultation event type."""


def project_registry(event: Event, seq: int) -> list[Statement]:
    """The statements applying a registry or consultation event, its log row last."""
    return [*REGISTRY_PROJECTIONS[type(event)](event, seq), _log(event, seq)]
