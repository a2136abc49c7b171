"""HTTP clients to LLM providers: model listing and chat, behind provider-neutral types.

- :mod:`libs.llm.transport`: timeouts, retries (jittered backoff, ``Retry-After``), breaker.
- :mod:`libs.llm.openai_compat`, :mod:`libs.llm.anthropic`, :mod:`libs.llm.gemini`: adapters.
- :mod:`libs.llm.factory`: configuration to clients.

The compressor's LLM engine calls a :class:`ChatClient`:
``await client.complete(messages, max_tokens=..., timeout_s=...) -> ChatReply``.
"""

from libs.llm.anthropic import AnthropicChatClient, AnthropicModelLister
from libs.llm.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from libs.llm.errors import (
    CircuitOpen,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    is_retryable,
    should_fail_over,
)
from libs.llm.factory import (
    ProviderConfig,
    ProviderKind,
    build_chat_client,
    build_http,
    build_lister,
)
from libs.llm.gemini import GeminiChatClient, GeminiModelLister
from libs.llm.openai_compat import OpenAIChatClient, OpenAIModelLister
from libs.llm.retry import RetryPolicy, parse_retry_after
from libs.llm.transport import CallPolicy, ProviderHttp
from libs.llm.types import (
    ChatClient,
    ChatMessage,
    ChatReply,
    FinishReason,
    ListedModel,
    Listing,
    ModelLister,
)

__all__ = [
    "AnthropicChatClient",
    "AnthropicModelLister",
    "BreakerPolicy",
    "BreakerState",
    "CallPolicy",
    "ChatClient",
    "ChatMessage",
    "ChatReply",
    "CircuitBreaker",
    "CircuitOpen",
    "FinishReason",
    "GeminiChatClient",
    "GeminiModelLister",
    "ListedModel",
    "Listing",
    "MalformedResponse",
    "ModelLister",
    "OpenAIChatClient",
    "OpenAIModelLister",
    "ProviderConfig",
    "ProviderError",
    "ProviderHttp",
    "ProviderKind",
    "ProviderRejected",
    "ProviderServerError",
    "ProviderTimeout",
    "ProviderUnreachable",
    "RateLimited",
    "RetryPolicy",
    "build_chat_client",
    "build_http",
    "build_lister",
    "is_retryable",
    "parse_retry_after",
    "should_fail_over",
]
