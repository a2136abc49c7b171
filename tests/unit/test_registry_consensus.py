"""Consensus by content with the real offline MiniLM embedder; consultations against real
chat clients on local replay servers (one per provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import httpx
import numpy as np
import pytest

from libs.embeddings import MiniLMOnnxEmbedder
from libs.events.registry import (
    ConsensusAbstainedData,
    ConsensusReachedData,
    ConsultationAnswerReceivedData,
    ConsultationModelFailedData,
    ConsultationStartedData,
    RankingEntryData,
    RankingPublishedData,
)
from libs.llm import CallPolicy, ProviderConfig, RetryPolicy, build_chat_client, build_http
from libs.llm.types import ListedModel
from services.registry_sync.consensus import Answer, consensus, discrete_key, facts
from services.registry_sync.consult import ConsultRequest, consult
from services.registry_sync.diff import ProviderFetch, apply_sync
from services.registry_sync.records import build_record
from services.registry_sync.routing import RouteRequest, RoutingIndex
from services.registry_sync.state import EMPTY, fold
from tests.support_http import Recorded, ReplayServer


@pytest.fixture(scope="module")
def embed():
    embedder = MiniLMOnnxEmbedder.shared()
    return embedder.embed


AGREE_1 = "The capital of Australia is Canberra."
AGREE_2 = "Canberra is Australia's capital city, not Sydney."
DISSENT = "Sydney is the capital of Australia."


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_two_agreeing_in_other_words_beat_one_dissenter(embed, order) -> None:
    texts = [("anthropic/c", AGREE_1), ("gemini/g", AGREE_2), ("openai/o", DISSENT)]
    answers = [Answer(key=texts[i][0], text=texts[i][1]) for i in order]
    result = consensus(answers, embed, question="What is the capital of Australia?")
    assert result.reached and result.method == "semantic"
    assert result.answer_key in {"anthropic/c", "gemini/g"}
    assert result.agreement == pytest.approx(2 / 3, abs=1e-6)
    assert [d.key for d in result.dissent] == ["openai/o"]
    assert "openai/o" in result.claims[0].contradicted_by
    assert set(result.claims[0].supported_by) <= {"anthropic/c", "gemini/g"}


def test_exact_voting_for_discrete_answers(embed) -> None:
    answers = [Answer(key="a", text="The answer is 1,000."), Answer(key="b", text="1000"),
               Answer(key="c", text="**999**"), Answer(key="d", text="Final answer: 1000.0")]
    result = consensus(answers, embed)
    assert result.method == "exact" and result.reached and result.agreement == 0.75
    assert result.clusters[0].label == "n:1000" and result.dissent[0].key == "c"
    assert discrete_key("Yes.") == "b:yes" and discrete_key("TRUE") == "b:yes"
    assert discrete_key("B") == "c:b" and discrete_key("-3.50") == "n:-3.5"
    assert discrete_key("a long answer that goes on and on for words") is None
    assert discrete_key("") is None


def test_abstains_when_nobody_agrees(embed) -> None:
    answers = [Answer(key="a", text="Bake the bread at 220 degrees for forty minutes."),
               Answer(key="b", text="Use a B-tree index for range queries in PostgreSQL."),
               Answer(key="c", text="The Treaty of Westphalia was signed in 1648.")]
    result = consensus(answers, embed)
    assert not result.reached and result.agreement == pytest.approx(1 / 3, abs=1e-6)
    assert result.reason and "below" in result.reason


def test_ties_and_degenerate_inputs_abstain(embed) -> None:
    tie = consensus([Answer(key=k, text=t) for k, t in
                     (("a", "42"), ("b", "41"), ("c", "42"), ("d", "41"))], embed)
    assert not tie.reached and tie.reason == "tie between clusters"
    assert consensus([], embed).reason == "no answers"
    blank = [Answer(key="a", text="  \u200b "), Answer(key="b", text="")]
    assert not consensus(blank, embed).reached
    assert not consensus([Answer(key="a", text="alone")], embed).reached


def test_fact_extraction() -> None:
    asserted, negated = facts("Canberra, not Sydney, has 3 lakes and twelve bridges.")
    assert asserted == {"canberra", "3", "12"} and negated == {"sydney"}
    assert facts("\x00 ünïcödé Ωmega 1e400") is not None


def test_deterministic_and_weight_free(embed) -> None:
    answers = [Answer(key="x", text=AGREE_1), Answer(key="y", text=AGREE_2),
               Answer(key="z", text=DISSENT)]
    assert consensus(answers, embed) == consensus(list(reversed(answers)), embed)


def test_huge_answers(embed) -> None:
    long = "Canberra is the capital. " * 2000
    result = consensus([Answer(key="a", text=long), Answer(key="b", text=AGREE_1),
                        Answer(key="c", text=AGREE_2)], embed)
    assert result.reached


# --- consultations ---------------------------------------------------------------------

def openai_reply(text: str) -> Recorded:
    return Recorded.json({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                          "choices": [{"index": 0, "message": {"role": "assistant",
                                                               "content": text},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 30, "completion_tokens": 10}})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def registry(weights: dict[str, float]):
    models = [("alpha", "gpt-4o"), ("beta", "claude-sonnet-4"), ("gamma", "gemini-2.5-pro"),
              ("delta", "llama-3.3-70b")]
    fetches = [ProviderFetch(provider=p, pages=1, records=(build_record(ListedModel(
        provider=p, model_id=m, input_cost_per_token=1e-6, output_cost_per_token=2e-6),
        None, {}),)) for p, m in models]
    state = apply_sync(EMPTY, fetches, date(2025, 6, 1))[0]
    entries = tuple(RankingEntryData(key=k, leaderboard_name=k, matched_by="alias",
                                     score=1300, routing_weight=w)
                    for k, w in sorted(weights.items()))
    return fold(state, [RankingPublishedData(source="arena", category="overall", rows=4,
                                             pages=1, entries=entries, unmatched=0)])


async def run(servers: dict[str, ReplayServer], http, embed, weights, **request):
    state = registry(weights)
    index = RoutingIndex(state)
    clients = {}
    for provider, server in servers.items():
        cfg = ProviderConfig(name=provider, kind="openai", base_url=server.url,
                             policy=CallPolicy(retry=RetryPolicy(attempts=1)))
        clients[provider] = build_http(cfg, client=http)
    model_of = {k: m.record for k, m in state.models.items()}

    def client_for(key: str):
        provider = key.split("/", 1)[0]
        cfg = ProviderConfig(name=provider, kind="openai", base_url=servers[provider].url)
        return build_chat_client(cfg, clients[provider], model_of[key].model_id)

    events: list[object] = []

    async def emit(payload) -> None:
        events.append(payload)

    outcome = await consult(ConsultRequest(
        consultation_id="c1", prompt="What is the capital of Australia?",
        context="Notes: the user is planning a trip.", route=RouteRequest(profile="best"),
        **request), index, model_of, client_for, embed, emit)
    return outcome, events, index


async def test_consultation_picks_the_agreeing_answer_whatever_the_weights(http, embed):
    with ReplayServer() as a, ReplayServer() as b, ReplayServer() as c, ReplayServer() as d:
        for server, text in ((a, DISSENT), (b, AGREE_1), (c, AGREE_2), (d, AGREE_1)):
            server.add("POST", "/v1/chat/completions", openai_reply(text))
        weights = {"alpha/gpt-4o": 1.0, "beta/claude-sonnet-4": 0.1,
                   "gamma/gemini-2.5-pro": 0.1, "delta/llama-3.3-70b": 0.0}
        outcome, events, _ = await run({"alpha": a, "beta": b, "gamma": c, "delta": d},
                                       http, embed, weights, models=3, timeout_s=5)
    started = events[0]
    assert isinstance(started, ConsultationStartedData)
    assert started.planned[0] == "alpha/gpt-4o"  # the dissenter is the top-weighted model
    verdict = events[-1]
    assert isinstance(verdict, ConsensusReachedData)
    assert verdict.answer_key in {"beta/claude-sonnet-4", "gamma/gemini-2.5-pro"}
    assert [x.key for x in verdict.dissent] == ["alpha/gpt-4o"]
    answers = [e for e in events if isinstance(e, ConsultationAnswerReceivedData)]
    assert len(answers) == 3 and all(e.cost_usd == pytest.approx(5e-5) for e in answers)
    assert all(e.input_tokens == 30 and e.latency_ms > 0 for e in answers)
    sent = a.requests[0].json()["messages"][1]["content"]
    assert "Notes: the user is planning a trip." in sent and "capital of Australia" in sent
    assert outcome.failed == ()


async def test_dead_and_slow_providers_are_cut_off_and_failed_over(http, embed):
    with ReplayServer() as a, ReplayServer() as b, ReplayServer() as c, ReplayServer() as d:
        a.add("POST", "/v1/chat/completions", openai_reply(AGREE_1).slowed(10))  # slow
        b.add("POST", "/v1/chat/completions", Recorded.json(
            {"error": {"message": "upstream", "type": "server_error"}}, status=503))
        c.add("POST", "/v1/chat/completions", openai_reply(AGREE_2))
        d.add("POST", "/v1/chat/completions", openai_reply(AGREE_1))
        weights = {"alpha/gpt-4o": 0.9, "beta/claude-sonnet-4": 0.8,
                   "gamma/gemini-2.5-pro": 0.7, "delta/llama-3.3-70b": 0.1}
        outcome, events, index = await run({"alpha": a, "beta": b, "gamma": c, "delta": d},
                                           http, embed, weights, models=3, timeout_s=0.5)
    failures = {e.key: e for e in events if isinstance(e, ConsultationModelFailedData)}
    assert failures["alpha/gpt-4o"].error_code == "timeout"
    assert failures["beta/claude-sonnet-4"].error_code == "server_error"
    taken_over = {f.failover_to for f in failures.values()}
    assert "delta/llama-3.3-70b" in taken_over  # the next routed family took a slot
    assert isinstance(events[-1], ConsensusReachedData)
    assert events[-1].answer_key in {"gamma/gemini-2.5-pro", "delta/llama-3.3-70b"}
    assert set(outcome.failed) == {"alpha/gpt-4o", "beta/claude-sonnet-4"}
    assert index.observations.reliability["beta/claude-sonnet-4"] < 0.9


async def test_vanished_providers_leave_an_abstention_not_a_hang(http, embed):
    with ReplayServer() as a, ReplayServer() as b, ReplayServer() as c, ReplayServer() as d:
        c.add("POST", "/v1/chat/completions", openai_reply(AGREE_2))
        for server in (a, b, d):
            server.stop()
        weights = {"alpha/gpt-4o": 0.9, "beta/claude-sonnet-4": 0.8,
                   "gamma/gemini-2.5-pro": 0.7, "delta/llama-3.3-70b": 0.1}
        _, events, _ = await run({"alpha": a, "beta": b, "gamma": c, "delta": d}, http, embed,
                                 weights, models=3, timeout_s=2)
    verdict = events[-1]
    assert isinstance(verdict, ConsensusAbstainedData) and verdict.answers == 1
    assert sum(isinstance(e, ConsultationModelFailedData) for e in events) == 3


def test_embedder_gives_unit_vectors(embed) -> None:
    vectors = embed([AGREE_1, AGREE_2])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
