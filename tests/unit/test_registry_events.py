"""Registry and consultation events on the wire and in the projections (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.events import decode_event, encode_event, event_subject, new_command_id
from libs.events.model import Actor, ModelChanged, ModelListed, event_types
from libs.events.reasoning import consultation_event, registry_event
from libs.events.registry import (
    ConsultationStartedData,
    FieldChangeData,
    ModelChangedData,
    ModelListedData,
    ModelRecordData,
    ProviderSyncFailedData,
    RankingPublishedData,
    model_aggregate_id,
)
from libs.readmodel.projections import InvariantViolation, check_subject, is_projected, project
from libs.readmodel.registry_expected import fold_registry

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
RECORD = ModelRecordData(key="openai/gpt-4o", provider="openai", model_id="gpt-4o",
                         family="gpt", capabilities=("chat",), input_cost_per_token=2.5e-06,
                         sources={"family": "default", "capabilities": "default"})


def test_every_reasoning_event_is_in_the_union() -> None:
    names = set(event_types())
    assert {"ModelListed", "ModelChanged", "ModelSuspect", "ModelRetired", "ModelRestored",
            "ProviderSynced", "ProviderSyncFailed", "RankingPublished", "ConsultationStarted",
            "ConsultationAnswerReceived", "ConsultationModelFailed", "ConsensusReached",
            "ConsensusAbstained"} <= names


@pytest.mark.parametrize(("payload", "subject"), [
    (ModelListedData(record=RECORD),
     f"mnemos.evt.system.model.{model_aggregate_id('openai/gpt-4o')}"),
    (ProviderSyncFailedData(provider="openai", error_code="timeout", message="slow",
                            stale_models=3), "mnemos.evt.system.provider.openai"),
    (RankingPublishedData(source="arena", category="overall", rows=0, pages=1, entries=(),
                          unmatched=0), "mnemos.evt.system.ranking.arena"),
])
def test_registry_events_live_under_system_subjects(payload: object, subject: str) -> None:
    tick = new_command_id()
    event = registry_event(payload, command_id=tick, index=4, at=AT)  # type: ignore[arg-type]
    assert event_subject(event.ns, event.aggregate, event.aggregate_id) == subject
    assert decode_event(encode_event(event)) == event
    again = registry_event(payload, command_id=tick, index=4, at=AT)  # type: ignore[arg-type]
    assert again.id == event.id  # a republished tick is a duplicate, not a second event
    assert registry_event(payload, command_id=tick, index=5, at=AT).id != event.id  # type: ignore[arg-type]
    check_subject(event, subject)
    assert is_projected(event)


def test_consultations_live_in_the_callers_namespace() -> None:
    cid = new_command_id()
    data = ConsultationStartedData(consultation_id=cid, prompt="q?", context_hash="h",
                                   context_chars=0, profile="best", planned=("a/b",),
                                   candidates=1, timeout_s=5.0)
    event = consultation_event("team-a", data, actor=Actor(principal="p"), index=0, at=AT)
    assert (event.ns, event.aggregate, event.aggregate_id) == ("team-a", "consultation", cid)
    assert event.command_id == cid


def test_a_registry_event_under_a_foreign_aggregate_is_refused() -> None:
    event = registry_event(ModelListedData(record=RECORD), command_id=new_command_id(),
                           index=0, at=AT)
    forged = ModelListed(**{**{f: getattr(event, f) for f in event.__struct_fields__},
                            "aggregate": "memory"})
    with pytest.raises(InvariantViolation):
        check_subject(forged, event_subject(forged.ns, "memory", forged.aggregate_id))


def test_projection_logs_every_event_last_and_expects_its_model() -> None:
    changed = registry_event(ModelChangedData(key="openai/gpt-4o", changes=(FieldChangeData(
        field="context_window", old=None, new=128000, source="provider"),)),
        command_id=new_command_id(), index=0, at=AT)
    assert isinstance(changed, ModelChanged)
    statements = project(changed, 7, None)
    assert statements[-1].query.startswith("INSERT INTO registry_events")
    assert statements[0].expect_rows == 1  # a change of an unknown model is poison


def test_the_fold_names_an_event_no_earlier_event_explains() -> None:
    changed = registry_event(ModelChangedData(key="x/y", changes=()),
                             command_id=new_command_id(), index=0, at=AT)
    listed = registry_event(ModelListedData(record=RECORD), command_id=new_command_id(),
                            index=0, at=AT)
    expected, problems = fold_registry([(changed, 1), (listed, 2)])  # type: ignore[list-item]
    assert len(problems) == 1 and "seq 1" in problems[0]
    row = expected.models["openai/gpt-4o"]
    assert row["record"]["input_cost_per_token"] == 2.5e-06 and row["listed_seq"] == 2
