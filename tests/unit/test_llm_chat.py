"""Chat clients of the three protocols against recorded responses on a real local server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from libs.events.errors import InvalidInput
from libs.llm import (
    CallPolicy,
    ChatMessage,
    MalformedResponse,
    ProviderConfig,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    RateLimited,
    RetryPolicy,
    build_chat_client,
    build_http,
)
from tests.support_http import Recorded, ReplayServer, load_recorded

FIXTURES = Path(__file__).parents[1] / "fixtures" / "providers"
ASK = [ChatMessage(role="system", content="Answer in one sentence."),
       ChatMessage(role="user", content="What is the capital of Australia?")]


def rec(name: str, delay_s: float = 0.0) -> Recorded:
    return load_recorded(FIXTURES / name, delay_s)


async def no_sleep(delay: float) -> None:
    return None


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


def chat(server: ReplayServer, client: httpx.AsyncClient, kind: str, model: str,
         attempts: int = 3):
    cfg = ProviderConfig(name=kind, kind=kind, base_url=server.url,  # type: ignore[arg-type]
                         api_key="k-1", policy=CallPolicy(retry=RetryPolicy(attempts=attempts)))
    return build_chat_client(cfg, build_http(cfg, client=client, sleep=no_sleep), model)


async def test_openai_completion(server: ReplayServer, client) -> None:
    server.add("POST", "/v1/chat/completions", rec("openai/chat_completion.json"))
    reply = await chat(server, client, "openai", "gpt-4o").complete(ASK, max_tokens=64,
                                                                      timeout_s=5)
    assert reply.text == "The capital of Australia is Canberra."
    assert (reply.input_tokens, reply.output_tokens) == (19, 8)
    assert reply.model == "gpt-4o-2024-08-06" and reply.finish_reason == "stop"
    assert reply.latency_s > 0
    sent = server.requests[0].json()
    assert sent["model"] == "gpt-4o" and sent["max_tokens"] == 64
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


async def test_anthropic_message_moves_system_to_the_top(server: ReplayServer, client) -> None:
    server.add("POST", "/v1/messages", rec("anthropic/message.json"))
    reply = await chat(server, client, "anthropic", "claude-sonnet-4-20250514").complete(
        ASK, max_tokens=64, timeout_s=5)
    assert reply.text == "Canberra is the capital city of Australia."
    assert (reply.input_tokens, reply.output_tokens, reply.finish_reason) == (21, 12, "stop")
    sent = server.requests[0]
    assert sent.headers["x-api-key"] == "k-1" and sent.headers["anthropic-version"]
    body = sent.json()
    assert body["system"] == "Answer in one sentence."
    assert body["messages"] == [{"role": "user", "content": "What is the capital of Australia?"}]


async def test_gemini_generate_content(server: ReplayServer, client) -> None:
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    server.add("POST", path, rec("gemini/generate_content.json"))
    reply = await chat(server, client, "gemini", "gemini-2.5-flash").complete(
        ASK, max_tokens=64, timeout_s=5)
    assert reply.text == "Australia's capital is Canberra, not Sydney."
    assert reply.output_tokens == 11 + 28  # thinking tokens are billed as output
    body = server.requests[0].json()
    assert body["systemInstruction"] == {"parts": [{"text": "Answer in one sentence."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 64}
    assert body["contents"][0]["role"] == "user"


async def test_gemini_blocked_prompt_is_a_rejection(server: ReplayServer, client) -> None:
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    server.add("POST", path, rec("gemini/blocked.json"))
    with pytest.raises(ProviderRejected, match="PROHIBITED_CONTENT"):
        await chat(server, client, "gemini", "gemini-2.5-flash").complete(ASK, max_tokens=8,
                                                                            timeout_s=5)


@pytest.mark.parametrize(("kind", "path", "fixture", "error"), [
    ("openai", "/v1/chat/completions", "openai/rate_limited.json", RateLimited),
    ("anthropic", "/v1/messages", "anthropic/rate_limited.json", RateLimited),
    ("anthropic", "/v1/messages", "anthropic/overloaded.json", ProviderServerError),
    ("gemini", "/v1beta/models/m:generateContent", "gemini/resource_exhausted.json",
     RateLimited),
    ("openai", "/v1/chat/completions", "openai/models_truncated.json", MalformedResponse),
    ("openai", "/v1/chat/completions", "openai/models.json", MalformedResponse),  # wrong shape
])
async def test_chat_failures_are_typed(server: ReplayServer, client, kind: str, path: str,
                                       fixture: str, error: type[Exception]) -> None:
    server.add("POST", path, rec(fixture))
    with pytest.raises(error):
        await chat(server, client, kind, "m", attempts=1).complete(ASK, max_tokens=8,
                                                                   timeout_s=5)


async def test_a_429_then_success_is_one_answer(server: ReplayServer, client) -> None:
    server.add("POST", "/v1/messages", rec("anthropic/rate_limited.json"),
               rec("anthropic/message.json"))
    reply = await chat(server, client, "anthropic", "m").complete(ASK, max_tokens=8, timeout_s=5)
    assert reply.text.startswith("Canberra") and len(server.requests) == 2


async def test_timeout_bounds_the_whole_call(server: ReplayServer, client) -> None:
    server.add("POST", "/v1/chat/completions", rec("openai/chat_completion.json", delay_s=5))
    with pytest.raises(ProviderTimeout):
        await chat(server, client, "openai", "m").complete(ASK, max_tokens=8, timeout_s=0.3)


@pytest.mark.parametrize(("messages", "max_tokens", "timeout_s"), [
    ([], 8, 5.0),
    ([ChatMessage(role="system", content="only a system turn")], 8, 5.0),
    ([ChatMessage(role="user", content="nul \x00 inside")], 8, 5.0),
    (ASK, 0, 5.0),
    (ASK, 8, 0.0),
    (ASK, 8, float("nan")),
])
async def test_bad_requests_never_leave_the_process(server: ReplayServer, client, messages,
                                                    max_tokens: int, timeout_s: float) -> None:
    with pytest.raises(InvalidInput):
        await chat(server, client, "openai", "m").complete(messages, max_tokens=max_tokens,
                                                           timeout_s=timeout_s)
    assert server.requests == []


async def test_unicode_round_trips(server: ReplayServer, client) -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": "Канберра 🇦🇺"},
                         "finish_reason": "length"}], "model": "m",
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    server.add("POST", "/v1/chat/completions", Recorded.json(body))
    ask = [ChatMessage(role="user", content="Столица Австралии? 🇦🇺")]
    reply = await chat(server, client, "openai", "m").complete(ask, max_tokens=2, timeout_s=5)
    assert reply.text == "Канберра 🇦🇺" and reply.finish_reason == "length"
    assert server.requests[0].json()["messages"][0]["content"] == "Столица Австралии? 🇦🇺"
