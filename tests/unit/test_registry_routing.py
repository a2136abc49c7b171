"""Routing: hard filters, profiles, determinism, failover order, and the next-tick guarantee."""

from __future__ import annotations

from datetime import date, timedelta

from libs.events.registry import ModelRecordData, RankingEntryData, RankingPublishedData
from libs.llm.types import ListedModel
from services.registry_sync.diff import LivenessPolicy, ProviderFetch, apply_sync
from services.registry_sync.records import build_record
from services.registry_sync.routing import (
    RouteRequest,
    RoutingIndex,
    RoutingPolicy,
    pick_diverse,
)
from services.registry_sync.state import EMPTY, RegistryState, fold

DAY = date(2025, 6, 1)


def listed(provider: str, model_id: str, **fields) -> ListedModel:
    return ListedModel(provider=provider, model_id=model_id, **fields)


MODELS = [
    listed("openai", "gpt-4o", context_window=128000, input_cost_per_token=2.5e-6,
           output_cost_per_token=1e-5, capabilities=("chat", "vision"),
           input_modalities=("image", "text")),
    listed("openai", "gpt-4o-mini", context_window=128000, input_cost_per_token=1.5e-7,
           output_cost_per_token=6e-7),
    listed("anthropic", "claude-sonnet-4", context_window=200000, input_cost_per_token=3e-6,
           output_cost_per_token=1.5e-5),
    listed("gemini", "gemini-2.5-flash", context_window=1048576, input_cost_per_token=3e-7,
           output_cost_per_token=2.5e-6),
    listed("gemini", "gemini-embedding-001", capabilities=("embeddings",), kind="embedding"),
]


def sync_state(models: list[ListedModel] = MODELS, state: RegistryState = EMPTY,
               today: date = DAY) -> RegistryState:
    by_provider: dict[str, list[ModelRecordData]] = {}
    for model in models:
        by_provider.setdefault(model.provider, []).append(build_record(model, None, {}))
    fetches = [ProviderFetch(provider=p, records=tuple(r), pages=1)
               for p, r in by_provider.items()]
    return apply_sync(state, fetches, today, LivenessPolicy(retire_after_missing=2))[0]


def ranked(state: RegistryState, weights: dict[str, float]) -> RegistryState:
    entries = tuple(RankingEntryData(key=k, leaderboard_name=k, matched_by="exact",
                                     score=1000 + 500 * w, routing_weight=w)
                    for k, w in sorted(weights.items()))
    return fold(state, [RankingPublishedData(source="arena", category="overall", rows=len(
        entries), pages=1, entries=entries, unmatched=0)])


def keys(decision) -> list[str]:
    return [c.key for c in decision.candidates]


def test_hard_filters_are_counted_by_reason() -> None:
    index = RoutingIndex(sync_state(), RoutingPolicy(allow={"team": ("openai/*",)}))
    assert "gemini/gemini-embedding-001" not in keys(index.route(RouteRequest()))
    vision = index.route(RouteRequest(input_modalities=("text", "image")))
    assert keys(vision) == ["openai/gpt-4o"] and vision.rejected["modality"] == 3
    big = index.route(RouteRequest(context_tokens=500_000))
    assert keys(big) == ["gemini/gemini-2.5-flash"]
    team = index.route(RouteRequest(namespace="team"))
    assert set(keys(team)) == {"openai/gpt-4o", "openai/gpt-4o-mini"}
    assert team.rejected["not_allowed"] == 3
    assert keys(index.route(RouteRequest(capabilities=("teleportation",)))) == []
    assert keys(index.route(RouteRequest(exclude=("openai/gpt-4o",),
                                         input_modalities=("image",)))) == []
    assert len(keys(index.route(RouteRequest(capabilities=())))) == 5


def test_profiles_trade_quality_for_cost() -> None:
    state = ranked(sync_state(), {"anthropic/claude-sonnet-4": 0.95, "openai/gpt-4o": 0.9,
                                  "openai/gpt-4o-mini": 0.3, "gemini/gemini-2.5-flash": 0.5})
    index = RoutingIndex(state)
    assert keys(index.route(RouteRequest(profile="best")))[0] == "anthropic/claude-sonnet-4"
    assert keys(index.route(RouteRequest(profile="cheap")))[0] == "openai/gpt-4o-mini"


def test_observed_failures_and_latency_move_a_model_down() -> None:
    index = RoutingIndex(ranked(sync_state(), {"openai/gpt-4o": 0.9,
                                               "anthropic/claude-sonnet-4": 0.88}))
    assert keys(index.route(RouteRequest(profile="best")))[0] == "openai/gpt-4o"
    for _ in range(5):
        index.observe("openai/gpt-4o", ok=False)
    index.observe("anthropic/claude-sonnet-4", ok=True, latency_s=0.4)
    assert keys(index.route(RouteRequest(profile="best")))[0] == "anthropic/claude-sonnet-4"
    rebuilt = RoutingIndex(sync_state(), observations=index.observations)
    assert rebuilt.observations.reliability["openai/gpt-4o"] < 0.5  # carried across ticks


def test_ties_break_by_key_and_decisions_are_deterministic() -> None:
    twins = [listed("z", "same"), listed("a", "same"), listed("m", "same")]
    index = RoutingIndex(sync_state(twins))
    first = index.route(RouteRequest())
    assert keys(first) == ["a/same", "m/same", "z/same"]
    assert all(index.route(RouteRequest()) == first for _ in range(20))


def test_diverse_pick_and_failover_order() -> None:
    index = RoutingIndex(sync_state())
    decision = index.route(RouteRequest(profile="best"))
    picked = pick_diverse(decision.candidates, 3)
    assert len({c.family for c in picked}) == 3
    assert len(pick_diverse(decision.candidates, 10)) == 3  # only three chat families exist
    assert [c.key for c in decision.candidates] == keys(decision)  # order = failover order


def test_a_model_retired_at_the_provider_is_not_routed_after_the_next_tick() -> None:
    today = DAY
    state = sync_state()
    index = RoutingIndex(state)
    assert "openai/gpt-4o" in keys(index.route(RouteRequest()))
    without = [m for m in MODELS if m.model_id != "gpt-4o"]
    routed_to_retired = 0
    for _tick in range(4):  # the clock advances a day per sync tick
        today += timedelta(days=1)
        state = sync_state(without, state, today)
        index = RoutingIndex(state)  # rebuilt every tick, no configuration edit
        for request in (RouteRequest(), RouteRequest(profile="best"),
                        RouteRequest(profile="cheap", limit=100)):
            routed_to_retired += keys(index.route(request)).count("openai/gpt-4o")
    assert state.models["openai/gpt-4o"].liveness == "retired"
    assert routed_to_retired == 0  # suspect from the first missed tick, retired by the second
    suspect_ok = index.route(RouteRequest(include_suspect=True))
    assert "openai/gpt-4o" not in keys(suspect_ok)  # retired is never routed


def test_empty_registry_and_huge_limits() -> None:
    index = RoutingIndex(EMPTY)
    decision = index.route(RouteRequest(limit=10**9))
    assert decision.candidates == () and decision.considered == 0
    assert keys(RoutingIndex(sync_state()).route(RouteRequest(limit=0))) == []
