"""Provider configuration and the one place that turns it into HTTP clients.

One :class:`~libs.llm.transport.ProviderHttp` per provider is shared by its lister and all its
chat clients, so they share one connection pool and one circuit breaker.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

from libs.events.errors import InvalidInput
from libs.events.tokens import validate_token
from libs.llm.anthropic import ANTHROPIC_VERSION, AnthropicChatClient, AnthropicModelLister
from libs.llm.breaker import CircuitBreaker
from libs.llm.gemini import GeminiChatClient, GeminiModelLister
from libs.llm.openai_compat import OpenAIChatClient, OpenAIModelLister
from libs.llm.transport import CallPolicy, ProviderHttp
from libs.llm.types import ChatClient, ModelLister

__all__ = ["ProviderConfig", "ProviderKind", "build_chat_client", "build_http", "build_lister"]

ProviderKind = Literal["openai", "anthropic", "gemini"]
"""Which wire protocol a provider speaks (``openai`` = any OpenAI-compatible server)."""


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    """One configured provider.

    ``name`` is the registry's provider name (a subject token such as ``openai``, ``groq``,
    ``local-vllm``); ``base_url`` has no trailing ``/v1``; ``api_key`` is never shown in a repr.
    ``key_in_query`` sends a Gemini key as ``?key=`` instead of ``x-goog-api-key``.
    """

    name: str
    kind: ProviderKind
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    key_in_query: bool = False
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    policy: CallPolicy = field(default_factory=CallPolicy)

    def __post_init__(self) -> None:
        validate_token(self.name, "provider name")
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidInput("provider base_url must be an http(s) URL", provider=self.name)


def _auth_headers(config: ProviderConfig) -> dict[str, str]:
    key = config.api_key
    if config.kind == "anthropic":
        return {"anthropic-version": ANTHROPIC_VERSION} | ({"x-api-key": key} if key else {})
    if config.kind == "gemini":
        return {"x-goog-api-key": key} if key and not config.key_in_query else {}
    return {"Authorization": f"Bearer {key}"} if key else {}


def build_http(
    config: ProviderConfig, *, client: httpx.AsyncClient | None = None,
    breaker_clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> ProviderHttp:
    """The HTTP edge of one provider, with its credentials, policy and breaker."""
    breaker = (CircuitBreaker(config.name, config.policy.breaker, breaker_clock)
               if breaker_clock else None)
    return ProviderHttp(config.name, config.base_url, headers=_auth_headers(config),
                        policy=config.policy, client=client, breaker=breaker, sleep=sleep,
                        rng=rng)


def _query_key(config: ProviderConfig) -> str | None:
    return config.api_key if config.key_in_query else None


def build_lister(config: ProviderConfig, http: ProviderHttp) -> ModelLister:
    """The model lister for ``config``'s protocol."""
    if config.kind == "anthropic":
        return AnthropicModelLister(http)
    if config.kind == "gemini":
        return GeminiModelLister(http, key_in_query=_query_key(config))
    return OpenAIModelLister(http)


def build_chat_client(config: ProviderConfig, http: ProviderHttp, model: str) -> ChatClient:
    """A chat client for ``model`` at ``config``'s provider."""
    if config.kind == "anthropic":
        return AnthropicChatClient(http, model)
    if config.kind == "gemini":
        return GeminiChatClient(http, model, key_in_query=_query_key(config))
    return OpenAIChatClient(http, model, max_tokens_field=config.max_tokens_field)
