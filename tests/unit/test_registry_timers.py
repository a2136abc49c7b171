"""registry_sync's timers (no servers): when the provider and leaderboard syncs are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from libs.llm import ProviderConfig
from services.registry_sync.config import RegistrySyncConfig
from services.registry_sync.records import build_record
from services.registry_sync.service import RegistryService
from services.registry_sync.state import ModelState, RegistryState

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def service(clock: Clock, **kw: object) -> RegistryService:
    settings = RegistrySyncConfig(
        providers=(ProviderConfig(name="p", kind="openai", base_url="http://127.0.0.1:9"),),
        provider_interval_s=86_400, leaderboard_interval_s=7 * 86_400, retry_failed_s=900,
        leaderboard="/nowhere.csv", **kw)  # type: ignore[arg-type]
    return RegistryService(settings, None, embed=lambda t: np.zeros((len(t), 4), np.float32),
                           clock=clock)


def with_a_model(svc: RegistryService) -> None:
    from libs.llm.types import ListedModel
    record = build_record(ListedModel(provider="p", model_id="m"), None, {})
    svc.folded.state = RegistryState(models={record.key: ModelState(record=record)})


def test_nothing_configured_is_never_due() -> None:
    svc = RegistryService(RegistrySyncConfig(), None, embed=lambda t: np.zeros((0, 4), np.float32),
                          clock=Clock())
    assert svc.due() == (False, False)


def test_providers_are_due_at_start_then_after_the_interval() -> None:
    clock = Clock()
    svc = service(clock)
    assert svc.due() == (True, False)  # no model yet: nothing to rank
    svc.folded.provider_at = NOW
    with_a_model(svc)
    assert svc.due() == (False, True)
    svc.folded.ranking_at = NOW
    clock.now = NOW + timedelta(hours=23)
    assert svc.due() == (False, False)
    clock.now = NOW + timedelta(days=1)
    assert svc.due() == (True, False)
    clock.now = NOW + timedelta(days=7)
    assert svc.due() == (True, True)


def test_a_failed_provider_is_retried_sooner_than_the_interval() -> None:
    clock = Clock()
    svc = service(clock)
    svc.folded.provider_at = NOW
    svc.folded.failing = {"p"}
    clock.now = NOW + timedelta(seconds=899)
    assert svc.due()[0] is False
    clock.now = NOW + timedelta(seconds=900)
    assert svc.due()[0] is True


def test_a_failed_leaderboard_waits_before_the_next_attempt() -> None:
    clock = Clock()
    svc = service(clock)
    svc.folded.provider_at = NOW
    with_a_model(svc)
    svc._board_failed_at = NOW
    assert svc.due() == (False, False)
    clock.now = NOW + timedelta(seconds=900)
    assert svc.due() == (False, True)
