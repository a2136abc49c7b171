"""Model listing adapters against a real local server replaying recorded provider responses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from libs.llm import (
    BreakerPolicy,
    CallPolicy,
    CircuitOpen,
    MalformedResponse,
    ProviderConfig,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    RetryPolicy,
    build_http,
    build_lister,
)
from tests.support_http import Recorded, ReplayServer, load_recorded

FIXTURES = Path(__file__).parents[1] / "fixtures" / "providers"


def rec(name: str, delay_s: float = 0.0) -> Recorded:
    return load_recorded(FIXTURES / name, delay_s)


class Sleeps:
    """Records backoff waits instead of sleeping them (the client's injected sleep)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


def config(server: ReplayServer, kind: str = "openai", name: str = "openai",
           **policy: object) -> ProviderConfig:
    return ProviderConfig(name=name, kind=kind, base_url=server.url,  # type: ignore[arg-type]
                          api_key="sk-test-123", policy=CallPolicy(**policy))  # type: ignore[arg-type]


def lister_for(cfg: ProviderConfig, client: httpx.AsyncClient, sleeps: Sleeps | None = None):
    return build_lister(cfg, build_http(cfg, client=client, sleep=sleeps or Sleeps()))


async def test_openai_list_with_bearer_key(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openai/models.json"))
    listing = await lister_for(config(server), client).list_models()
    ids = [m.model_id for m in listing.models]
    assert ids[:3] == ["gpt-4o-mini", "gpt-4o", "gpt-4.1"] and len(ids) == 8
    assert listing.pages == 1
    first = listing.models[0]
    assert first.created_at == "2024-07-16T23:32:21Z" and first.owned_by == "system"
    assert first.context_window is None  # OpenAI does not say; the price table will
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123"


@pytest.mark.parametrize(("fixture", "model", "context", "max_out", "prices"), [
    ("groq/models.json", "llama-3.3-70b-versatile", 131072, 32768, (None, None)),
    ("together/models.json", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 131072, None,
     (0.88e-6, 0.88e-6)),
    ("openrouter/models.json", "openai/gpt-4o", 128000, 16384, (2.5e-6, 1e-5)),
    ("vllm/models.json", "Qwen/Qwen2.5-7B-Instruct", 32768, None, (None, None)),
    ("ollama/models.json", "llama3.2:latest", None, None, (None, None)),
])
async def test_openai_compatible_extras_each_in_its_own_spelling(
    server: ReplayServer, client, fixture: str, model: str, context: int | None,
    max_out: int | None, prices: tuple[float | None, float | None],
) -> None:
    server.add("GET", "/v1/models", rec(fixture))
    listing = await lister_for(config(server), client).list_models()
    found = {m.model_id: m for m in listing.models}[model]
    assert (found.context_window, found.max_output_tokens) == (context, max_out)
    assert found.input_cost_per_token == pytest.approx(prices[0]) if prices[0] else (
        found.input_cost_per_token is None)
    assert found.output_cost_per_token == pytest.approx(prices[1]) if prices[1] else (
        found.output_cost_per_token is None)


async def test_openrouter_modalities_and_together_kind(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openrouter/models.json"))
    listing = await lister_for(config(server), client).list_models()
    assert listing.models[0].input_modalities == ("file", "image", "text")
    server.add("GET", "/v1/models", rec("together/models.json"))
    kinds = {m.model_id: m.kind for m in (await lister_for(config(server), client)
                                          .list_models()).models}
    assert kinds["BAAI/bge-large-en-v1.5"] == "embedding"


async def test_openai_style_has_more_is_followed(server: ReplayServer, client) -> None:
    page = {"object": "list", "data": [{"id": "a", "object": "model", "created": 1,
                                        "owned_by": "x"}], "has_more": True, "last_id": "a"}
    last = {"object": "list", "data": [{"id": "b", "object": "model", "created": 2,
                                        "owned_by": "x"}], "has_more": False, "last_id": "b"}
    server.add("GET", "/v1/models", Recorded.json(page))
    server.add("GET", "/v1/models", Recorded.json(last), query={"after": "a"})
    listing = await lister_for(config(server), client).list_models()
    assert [m.model_id for m in listing.models] == ["a", "b"] and listing.pages == 2


async def test_a_has_more_that_never_moves_is_malformed(server: ReplayServer, client) -> None:
    page = {"object": "list", "data": [], "has_more": True, "last_id": "a"}
    server.add("GET", "/v1/models", Recorded.json(page))
    with pytest.raises(MalformedResponse):
        await lister_for(config(server), client).list_models()
    assert len(server.requests) == 2  # the repeat is noticed on the second page


async def test_anthropic_walks_every_page_with_its_headers(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("anthropic/models_page1.json"))
    server.add("GET", "/v1/models", rec("anthropic/models_page2.json"),
               query={"after_id": "claude-sonnet-4-20250514"})
    listing = await lister_for(config(server, "anthropic", "anthropic"), client).list_models()
    assert listing.pages == 2
    assert [m.model_id for m in listing.models][-1] == "claude-3-5-haiku-20241022"
    assert len(listing.models) == 5
    assert listing.models[0].display_name == "Claude Opus 4.1"
    assert listing.models[0].created_at == "2025-08-05T00:00:00Z"
    first, second = server.requests
    assert first.headers["x-api-key"] == "sk-test-123"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in first.headers
    assert first.query == {"limit": "1000"}
    assert second.query == {"limit": "1000", "after_id": "claude-sonnet-4-20250514"}


async def test_anthropic_malformed_second_page_fails_the_whole_listing(
    server: ReplayServer, client,
) -> None:
    server.add("GET", "/v1/models", rec("anthropic/models_page1.json"))
    server.add("GET", "/v1/models", rec("anthropic/models_page2_malformed.json"),
               query={"after_id": "claude-sonnet-4-20250514"})
    with pytest.raises(MalformedResponse):  # a partial list would look like retirements
        await lister_for(config(server, "anthropic", "anthropic"), client).list_models()


async def test_gemini_pages_by_token_with_header_key(server: ReplayServer, client) -> None:
    server.add("GET", "/v1beta/models", rec("gemini/models_page1.json"))
    server.add("GET", "/v1beta/models", rec("gemini/models_page2.json"),
               query={"pageToken": "Ch5tb2RlbHMvZ2VtaW5pLTIuMC1mbGFzaC0wMDE="})
    listing = await lister_for(config(server, "gemini", "gemini"), client).list_models()
    by_id = {m.model_id: m for m in listing.models}
    assert listing.pages == 2 and len(by_id) == 4
    pro = by_id["gemini-2.5-pro"]
    assert (pro.context_window, pro.max_output_tokens) == (1048576, 65536)
    assert pro.capabilities == ("chat", "reasoning")
    assert by_id["gemini-embedding-001"].capabilities == ("embeddings",)
    assert server.requests[0].headers["x-goog-api-key"] == "sk-test-123"
    assert "key" not in server.requests[0].query


async def test_gemini_key_in_query_never_reaches_an_error(server: ReplayServer, client) -> None:
    cfg = ProviderConfig(name="gemini", kind="gemini", base_url=server.url,
                         api_key="AIza-secret", key_in_query=True,
                         policy=CallPolicy(retry=RetryPolicy(attempts=1)))
    server.add("GET", "/v1beta/models", rec("gemini/unavailable.json"))
    with pytest.raises(ProviderServerError) as info:
        await lister_for(cfg, client).list_models()
    assert server.requests[0].query["key"] == "AIza-secret"
    assert "AIza-secret" not in str(info.value) and "AIza-secret" not in repr(info.value.detail)
    assert "AIza-secret" not in repr(cfg)


async def test_429_retry_after_is_honoured_then_succeeds(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openai/rate_limited.json"), rec("openai/models.json"))
    sleeps = Sleeps()
    listing = await lister_for(config(server), client, sleeps).list_models()
    assert len(listing.models) == 8
    assert sleeps.delays and sleeps.delays[0] >= 2.0  # the header's 2 s, not a shorter backoff
    assert len(server.requests) == 2


async def test_429_http_date_retry_after(server: ReplayServer, client) -> None:
    limited = rec("anthropic/rate_limited.json")
    dated = Recorded(limited.status, limited.body, tuple(
        (k, "Wed, 01 Jan 2200 00:00:00 GMT" if k == "retry-after" else v)
        for k, v in limited.headers))
    server.add("GET", "/v1/models", dated, rec("anthropic/models_page2.json"))
    sleeps = Sleeps()
    with pytest.raises(RateLimited) as info:  # a ban far beyond max_retry_after_s: no sleep
        await lister_for(config(server, "anthropic", "anthropic"), client, sleeps).list_models()
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 1e9
    assert sleeps.delays == [] and len(server.requests) == 1


async def test_gemini_retry_info_in_the_body_is_a_hint(server: ReplayServer, client) -> None:
    server.add("GET", "/v1beta/models", rec("gemini/resource_exhausted.json"),
               rec("gemini/models_page2.json"))
    sleeps = Sleeps()
    listing = await lister_for(config(server, "gemini", "gemini"), client, sleeps).list_models()
    assert len(listing.models) == 2 and sleeps.delays[0] >= 1.0


async def test_persistent_429_gives_up_after_the_attempts(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openai/rate_limited.json"))
    sleeps = Sleeps()
    with pytest.raises(RateLimited) as info:
        await lister_for(config(server, retry=RetryPolicy(attempts=3)), client,
                         sleeps).list_models()
    assert len(server.requests) == 3 and len(sleeps.delays) == 2
    assert "Rate limit reached" in info.value.message


@pytest.mark.parametrize(("fixture", "error"), [
    ("openai/invalid_api_key.json", ProviderRejected),
    ("openai/server_error.json", ProviderServerError),
    ("openai/bad_gateway.json", ProviderServerError),
    ("openai/models_truncated.json", MalformedResponse),
    ("anthropic/overloaded.json", ProviderServerError),
])
async def test_failures_are_typed(server: ReplayServer, client, fixture: str,
                                  error: type[Exception]) -> None:
    server.add("GET", "/v1/models", rec(fixture))
    with pytest.raises(error):
        await lister_for(config(server), client).list_models()
    rejected_once = error in (ProviderRejected, MalformedResponse)
    assert len(server.requests) == (1 if rejected_once else 3)  # 4xx and bad bodies: no retry


async def test_a_slow_provider_times_out(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openai/models.json", delay_s=5.0))
    with pytest.raises(ProviderTimeout):
        await lister_for(config(server, timeout_s=0.3), client).list_models()


async def test_a_dropped_connection_is_unreachable(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", Recorded(drop=True))
    with pytest.raises(ProviderUnreachable):
        await lister_for(config(server, retry=RetryPolicy(attempts=2)), client).list_models()


async def test_a_vanished_provider_opens_the_breaker(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openai/models.json"))
    cfg = config(server, retry=RetryPolicy(attempts=1),
                 breaker=BreakerPolicy(failure_threshold=2, reset_after_s=60))
    lister = lister_for(cfg, client)
    assert len((await lister.list_models()).models) == 8
    server.stop()
    for _ in range(2):
        with pytest.raises(ProviderUnreachable):
            await lister.list_models()
    with pytest.raises(CircuitOpen):
        await lister.list_models()


async def test_a_route_that_disappears_is_a_rejection(server: ReplayServer, client) -> None:
    server.add("GET", "/v1/models", rec("openai/models.json"))
    lister = lister_for(config(server), client)
    await lister.list_models()
    server.remove("GET", "/v1/models")
    with pytest.raises(ProviderRejected) as info:
        await lister.list_models()
    assert info.value.detail["status"] == 404


async def test_huge_and_unicode_lists(server: ReplayServer, client) -> None:
    data = [{"id": f"modèle-{i}-日本", "object": "model", "created": i, "owned_by": "x"}
            for i in range(20_000)]
    server.add("GET", "/v1/models", Recorded.json({"object": "list", "data": data}))
    listing = await lister_for(config(server), client).list_models()
    assert len(listing.models) == 20_000 and listing.models[-1].model_id == "modèle-19999-日本"


@pytest.mark.parametrize("bad_id", ["", "   ", "a\x00b", "x" * 300])
async def test_an_invalid_model_id_makes_the_page_malformed(server: ReplayServer, client,
                                                            bad_id: str) -> None:
    body = {"object": "list", "data": [{"id": "ok", "created": 1},
                                       {"id": bad_id, "created": 1}]}
    server.add("GET", "/v1/models", Recorded.json(body))
    with pytest.raises(MalformedResponse):
        await lister_for(config(server), client).list_models()


async def test_garbage_extras_are_ignored_not_fatal(server: ReplayServer, client) -> None:
    body = {"object": "list", "data": [{"id": "m", "created": "yesterday",
                                        "context_window": -5, "pricing": {"prompt": "NaN"},
                                        "max_completion_tokens": 1e400 if False else "big"}]}
    server.add("GET", "/v1/models", Recorded.json(body))
    (model,) = (await lister_for(config(server), client).list_models()).models
    assert model.context_window is None and model.input_cost_per_token is None
    assert model.created_at is None and model.max_output_tokens is None
