"""The sync diff and the liveness state machine, walked through every transition (pure)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from libs.events.registry import (
    ModelChangedData,
    ModelListedData,
    ModelRestoredData,
    ModelRetiredData,
    ModelSuspectData,
    ProviderSyncedData,
    ProviderSyncFailedData,
)
from libs.llm.types import ListedModel
from services.registry_sync.diff import (
    LivenessPolicy,
    ProviderFetch,
    apply_sync,
    probe_failed,
    probe_succeeded,
)
from services.registry_sync.prices import parse_price_table
from services.registry_sync.records import build_record, build_records
from services.registry_sync.state import EMPTY, RegistryState

DAY0 = date(2025, 6, 1)


def rec(model_id: str, provider: str = "p", **fields):
    return build_record(ListedModel(provider=provider, model_id=model_id, **fields), None, {})


def ok(*ids: str, provider: str = "p", **fields) -> ProviderFetch:
    return ProviderFetch(provider=provider, records=tuple(rec(i, provider, **fields)
                                                          for i in ids), pages=1)


def types(payloads) -> list[str]:
    return [type(p).__name__.removesuffix("Data") for p in payloads]


class Clock:
    """The injected clock of the sync: one tick a day."""

    def __init__(self) -> None:
        self.today = DAY0

    def tick(self) -> date:
        self.today += timedelta(days=1)
        return self.today


def test_every_transition_of_the_state_machine() -> None:
    clock, policy = Clock(), LivenessPolicy(retire_after_missing=3)
    state, out = apply_sync(EMPTY, [ok("a", "b")], clock.tick(), policy)
    assert types(out) == ["ModelListed", "ModelListed", "ProviderSynced"]
    state, out = apply_sync(state, [ok("a")], clock.tick(), policy)  # b missing once
    assert types(out) == ["ModelSuspect", "ProviderSynced"]
    assert state.models["p/b"].liveness == "suspect"
    state, out = apply_sync(state, [ok("a", "b")], clock.tick(), policy)  # reappears
    assert out[0] == ModelRestoredData(key="p/b", previous="suspect")
    assert state.models["p/b"].missing_syncs == 0
    for expected in (["ModelSuspect"], ["ModelSuspect"], ["ModelRetired"]):
        state, out = apply_sync(state, [ok("a")], clock.tick(), policy)
        assert types(out)[:-1] == expected
    assert state.models["p/b"].liveness == "retired"
    assert isinstance(out[0], ModelRetiredData) and out[0].missing_syncs == 3
    state, out = apply_sync(state, [ok("a")], clock.tick(), policy)
    assert types(out) == ["ProviderSynced"]  # retired stays retired, silently
    state, out = apply_sync(state, [ok("a", "b")], clock.tick(), policy)
    assert out[0] == ModelRestoredData(key="p/b", previous="retired")
    assert state.models["p/b"].liveness == "active"


def test_probe_failure_makes_suspect_and_only_a_probe_restores() -> None:
    state, _ = apply_sync(EMPTY, [ok("a")], DAY0)
    events = probe_failed(state, "p/a", "timeout")
    assert isinstance(events[0], ModelSuspectData) and events[0].reason == "probe_failed"
    state = apply_sync(state, [], DAY0)[0]
    from services.registry_sync.state import fold
    state = fold(state, events)
    assert probe_failed(state, "p/a", "again") == []  # already suspect
    _, out = apply_sync(state, [ok("a")], DAY0)
    assert types(out) == ["ProviderSynced"]  # still listed, but the probe said otherwise
    restored = probe_succeeded(state, "p/a")
    assert restored == [ModelRestoredData(key="p/a", previous="suspect")]
    assert probe_succeeded(state, "p/unknown") == []


def test_deprecation_date_retires_even_while_listed_and_not_before() -> None:
    prices = parse_price_table(b'{"m": {"deprecation_date": "2025-06-03", "mode": "chat"}}')
    records = build_records((ListedModel(provider="p", model_id="m"),), prices, None, {})
    fetch = ProviderFetch(provider="p", records=records, pages=1)
    state, out = apply_sync(EMPTY, [fetch], date(2025, 6, 3))  # on the date: still serving
    assert types(out) == ["ModelListed", "ProviderSynced"]
    state, out = apply_sync(state, [fetch], date(2025, 6, 4))
    assert isinstance(out[0], ModelRetiredData) and out[0].reason == "deprecated"
    state, out = apply_sync(state, [fetch], date(2025, 6, 5))
    assert types(out) == ["ProviderSynced"]  # listed again, but past its date: no restore
    failed = ProviderFetch(provider="p", error_code="timeout", error_message="t")
    _, out = apply_sync(EMPTY, [], date(2025, 6, 5))
    assert out == []
    state2, _ = apply_sync(EMPTY, [fetch], date(2025, 6, 1))
    _, out = apply_sync(state2, [failed], date(2025, 6, 9))  # provider down, date passed
    assert types(out) == ["ProviderSyncFailed", "ModelRetired"]


def test_a_failed_provider_keeps_its_models_marked_stale() -> None:
    state, _ = apply_sync(EMPTY, [ok("a", "b"), ok("x", provider="q")], DAY0)
    failed = ProviderFetch(provider="p", error_code="rate_limited", error_message="429")
    for _ in range(5):  # however long the outage, nothing is suspect or retired
        state, out = apply_sync(state, [failed, ok("x", provider="q")], DAY0)
        assert isinstance(out[0], ProviderSyncFailedData) and out[0].stale_models == 2
    assert all(m.liveness == "active" and m.stale for m in state.of_provider("p"))
    assert not state.models["q/x"].stale
    state, out = apply_sync(state, [ok("a", "b")], DAY0)
    assert types(out) == ["ProviderSynced"]
    assert not any(m.stale for m in state.models.values())


def test_field_changes_are_diffed_with_sources() -> None:
    state, _ = apply_sync(EMPTY, [ok("a", context_window=8192)], DAY0)
    state, out = apply_sync(state, [ok("a", context_window=32768, display_name="A")], DAY0)
    change = out[0]
    assert isinstance(change, ModelChangedData)
    assert [(c.field, c.old, c.new, c.source) for c in change.changes] == [
        ("context_window", 8192, 32768, "provider"), ("display_name", None, "A", "provider")]
    assert state.models["p/a"].record.context_window == 32768
    assert state.models["p/a"].record.sources["context_window"] == "provider"
    _, out = apply_sync(state, [ok("a", context_window=32768, display_name="A")], DAY0)
    assert types(out) == ["ProviderSynced"]  # nothing changed: no event


def test_diff_is_deterministic_and_counts_in_the_sync_log() -> None:
    fetches = [ok("b", "a", "c", provider="z"), ok("m", provider="y")]
    first = apply_sync(EMPTY, fetches, DAY0)[1]
    again = apply_sync(EMPTY, list(reversed(fetches)), DAY0)[1]
    assert first == again
    assert [p.provider for p in first if isinstance(p, ProviderSyncedData)] == ["y", "z"]
    assert [p.record.key for p in first if isinstance(p, ModelListedData)] == [
        "y/m", "z/a", "z/b", "z/c"]
    assert next(p for p in first if isinstance(p, ProviderSyncedData)
                and p.provider == "z").listed == 3


@pytest.mark.parametrize("model_id", ["модель-1", "🤖/x", "a" * 256, "gpt-4o:latest"])
def test_unicode_and_long_ids(model_id: str) -> None:
    state, out = apply_sync(EMPTY, [ok(model_id)], DAY0)
    assert isinstance(out[0], ModelListedData) and out[0].record.model_id == model_id
    assert isinstance(state, RegistryState)


def test_empty_list_from_a_provider_is_believed_step_by_step() -> None:
    state, _ = apply_sync(EMPTY, [ok("a")], DAY0)
    state, out = apply_sync(state, [ok()], DAY0)
    assert types(out) == ["ModelSuspect", "ProviderSynced"]  # one empty list retires nothing
