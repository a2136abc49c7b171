"""The sync diff and the liveness state machine (pure; the clock is an argument).

Liveness::

    active --missing once / probe failed--> suspect --missing N syncs in a row--> retired
    active|suspect --deprecation date passed--> retired
    suspect|retired --listed again (and not past its deprecation date)--> active (restored)
    suspect(probe failed) --probe succeeded--> active (restored)

A provider whose fetch failed changes nothing but its models' ``stale`` flag: an outage is not
evidence that models were withdrawn. Each missing sync is its own ``ModelSuspect`` event (with
the running count), so the count is a fold of the stream, like everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import msgspec

from libs.events.registry import (
    CATALOG_FIELDS,
    FailureCode,
    FieldChangeData,
    ModelChangedData,
    ModelListedData,
    ModelRecordData,
    ModelRestoredData,
    ModelRetiredData,
    ModelSuspectData,
    ProviderSyncedData,
    ProviderSyncFailedData,
)
from services.registry_sync.state import ModelState, RegistryPayload, RegistryState, fold

__all__ = [
    "LivenessPolicy",
    "ProviderFetch",
    "apply_sync",
    "diff_sync",
    "field_changes",
    "probe_failed",
    "probe_succeeded",
]


class LivenessPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """``retire_after_missing``: consecutive syncs a model may be missing before retirement."""

    retire_after_missing: int = 3


class ProviderFetch(msgspec.Struct, frozen=True, kw_only=True):
    """What one provider's sync fetched: its records, or why it failed."""

    provider: str
    records: tuple[ModelRecordData, ...] = ()
    pages: int = 0
    error_code: FailureCode | None = None
    error_message: str | None = None


def field_changes(old: ModelRecordData, new: ModelRecordData) -> tuple[FieldChangeData, ...]:
    """The catalogue fields whose value differs, sorted by name."""
    changes = []
    for field in sorted(CATALOG_FIELDS):
        before, after = getattr(old, field), getattr(new, field)
        if before != after:
            changes.append(FieldChangeData(field=field, old=before, new=after,
                                           source=new.sources.get(field, "default")))
    return tuple(changes)


def _deprecated(record: ModelRecordData, today: date) -> bool:
    return record.deprecation_date is not None and record.deprecation_date < today.isoformat()


def _seen(state: ModelState | None, record: ModelRecordData,
          today: date) -> list[RegistryPayload]:
    if state is None:
        listed: list[RegistryPayload] = [ModelListedData(record=record)]
        if _deprecated(record, today):
            listed.append(ModelRetiredData(key=record.key, reason="deprecated", missing_syncs=0,
                                           deprecation_date=record.deprecation_date))
        return listed
    out: list[RegistryPayload] = []
    changes = field_changes(state.record, record)
    if changes:
        out.append(ModelChangedData(key=record.key, changes=changes))
    if _deprecated(record, today):
        if state.liveness != "retired" or state.retired_reason != "deprecated":
            out.append(ModelRetiredData(key=record.key, reason="deprecated",
                                        missing_syncs=0, deprecation_date=record.deprecation_date))
    elif state.liveness == "retired" or (
            state.liveness == "suspect" and state.suspect_reason == "missing"):
        out.append(ModelRestoredData(key=record.key, previous=state.liveness))
    return out


def _missing(state: ModelState, policy: LivenessPolicy) -> list[RegistryPayload]:
    if state.liveness == "retired":
        return []
    count = state.missing_syncs + 1
    key = state.record.key
    if count >= policy.retire_after_missing:
        return [ModelRetiredData(key=key, reason="missing", missing_syncs=count)]
    return [ModelSuspectData(key=key, reason="missing", missing_syncs=count)]


def _provider(state: RegistryState, fetch: ProviderFetch, today: date,
              policy: LivenessPolicy) -> list[RegistryPayload]:
    known = state.of_provider(fetch.provider)
    if fetch.error_code is not None:
        return [ProviderSyncFailedData(
            provider=fetch.provider, error_code=fetch.error_code,
            message=(fetch.error_message or fetch.error_code)[:500], stale_models=len(known))]
    out: list[RegistryPayload] = []
    fetched = {r.key: r for r in fetch.records}
    for key in sorted(fetched):
        out.extend(_seen(state.models.get(key), fetched[key], today))
    for model in known:
        if model.record.key not in fetched:
            out.extend(_missing(model, policy))
    counts = _count(out)
    out.append(ProviderSyncedData(provider=fetch.provider, models_seen=len(fetched),
                                  pages=fetch.pages, **counts))
    return out


def _count(payloads: Iterable[RegistryPayload]) -> dict[str, int]:
    names = {ModelListedData: "listed", ModelChangedData: "changed",
             ModelSuspectData: "suspect", ModelRetiredData: "retired",
             ModelRestoredData: "restored"}
    counts = dict.fromkeys(names.values(), 0)
    for payload in payloads:
        name = names.get(type(payload))
        if name:
            counts[name] += 1
    return counts


def _expired(state: RegistryState, today: date,
             handled: set[str]) -> list[RegistryPayload]:
    """Deprecations that passed for models whose provider was not fetched this time."""
    return [ModelRetiredData(key=key, reason="deprecated", missing_syncs=m.missing_syncs,
                             deprecation_date=m.record.deprecation_date)
            for key, m in sorted(state.models.items())
            if m.record.provider not in handled and m.liveness != "retired"
            and _deprecated(m.record, today)]


def diff_sync(state: RegistryState, fetches: Sequence[ProviderFetch], today: date,
              policy: LivenessPolicy | None = None) -> list[RegistryPayload]:
    """The events of one sync tick, providers in name order (deterministic)."""
    policy = policy or LivenessPolicy()
    out: list[RegistryPayload] = []
    ok: set[str] = set()
    for fetch in sorted(fetches, key=lambda f: f.provider):
        out.extend(_provider(state, fetch, today, policy))
        if fetch.error_code is None:
            ok.add(fetch.provider)
    return out + _expired(state, today, ok)


def probe_failed(state: RegistryState, key: str, detail: str) -> list[RegistryPayload]:
    """An active model whose probe (or consultation call) failed becomes suspect."""
    model = state.models.get(key)
    if model is None or model.liveness != "active":
        return []
    return [ModelSuspectData(key=key, reason="probe_failed", missing_syncs=model.missing_syncs,
                             detail=detail[:500])]


def probe_succeeded(state: RegistryState, key: str) -> list[RegistryPayload]:
    """A model suspect only because a probe failed is restored by a successful one."""
    model = state.models.get(key)
    if model is None or model.liveness != "suspect" or model.suspect_reason != "probe_failed":
        return []
    return [ModelRestoredData(key=key, previous="suspect")]


def apply_sync(state: RegistryState, fetches: Sequence[ProviderFetch], today: date,
               policy: LivenessPolicy | None = None,
               ) -> tuple[RegistryState, list[RegistryPayload]]:
    """:func:`diff_sync` and the state after its events."""
    payloads = diff_sync(state, fetches, today, policy)
    return fold(state, payloads), payloads
