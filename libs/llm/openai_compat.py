"""OpenAI-compatible providers (OpenAI, Groq, xAI, Together, OpenRouter, vLLM, Ollama).

``GET /v1/models`` answers ``{"object": "list", "data": [{id, created, owned_by}, ...]}``; some
servers add fields, each in its own spelling: Groq ``context_window`` and
``max_completion_tokens``, vLLM ``max_model_len``, Together and OpenRouter ``context_length``,
OpenRouter ``pricing`` (USD per token, as strings) and ``top_provider.max_completion_tokens``,
Together ``pricing`` (USD per million tokens) and ``type``. Together answers a bare array.
A list that says ``has_more`` is followed with ``after=<last_id>`` until it stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import msgspec

from libs.llm.chat_base import ChatClientBase
from libs.llm.errors import MalformedResponse
from libs.llm.transport import ProviderHttp, decode_body
from libs.llm.types import (
    ChatMessage,
    ChatReply,
    FinishReason,
    ListedModel,
    Listing,
    clean_float,
    clean_int,
    clean_text,
)

__all__ = ["OpenAIChatClient", "OpenAIModelLister", "parse_openai_models"]

MAX_PAGES: Final = 1000
"""Guard against a server whose ``has_more`` never ends."""
PER_MILLION: Final = 1e-6
"""Together prices are USD per million tokens."""


class _Model(msgspec.Struct):
    id: str
    created: Any = None
    owned_by: Any = None
    # Extras: typed Any because providers disagree on their types; cleaned below.
    context_window: Any = None
    context_length: Any = None
    max_model_len: Any = None
    max_completion_tokens: Any = None
    top_provider: Any = None
    pricing: Any = None
    display_name: Any = None
    name: Any = None
    type: Any = None
    architecture: Any = None


class _Page(msgspec.Struct):
    data: list[_Model]
    has_more: bool = False
    last_id: str | None = None


_PAGE_OR_LIST: Final = msgspec.json.Decoder(_Page | list[_Model])


def _created_at(value: object) -> str | None:
    seconds = clean_int(value)
    if seconds is None or seconds > 32503680000:  # beyond year 3000: not a timestamp
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _prices(pricing: object) -> tuple[float | None, float | None]:
    if not isinstance(pricing, dict):
        return None, None
    if "prompt" in pricing or "completion" in pricing:  # OpenRouter: USD per token
        return clean_float(pricing.get("prompt")), clean_float(pricing.get("completion"))
    return (clean_float(pricing.get("input"), PER_MILLION),
            clean_float(pricing.get("output"), PER_MILLION))


def _modalities(architecture: object) -> tuple[str, ...]:
    if not isinstance(architecture, dict):
        return ()
    given = architecture.get("input_modalities")
    if not isinstance(given, list):
        return ()
    return tuple(sorted({m for m in given if isinstance(m, str) and clean_text(m, 32)}))


def _listed(provider: str, raw: _Model) -> ListedModel:
    model_id = clean_text(raw.id)
    if model_id is None:
        raise MalformedResponse(f"{provider} listed a model with an invalid id {raw.id[:80]!r}",
                                provider=provider)
    top = raw.top_provider if isinstance(raw.top_provider, dict) else {}
    input_cost, output_cost = _prices(raw.pricing)
    return ListedModel(
        provider=provider, model_id=model_id,
        display_name=clean_text(raw.display_name) or clean_text(raw.name),
        owned_by=clean_text(raw.owned_by), created_at=_created_at(raw.created),
        kind=clean_text(raw.type, 32),
        context_window=(clean_int(raw.context_window) or clean_int(raw.context_length)
                        or clean_int(raw.max_model_len)),
        max_output_tokens=(clean_int(raw.max_completion_tokens)
                           or clean_int(top.get("max_completion_tokens"))),
        input_cost_per_token=input_cost, output_cost_per_token=output_cost,
        input_modalities=_modalities(raw.architecture),
    )


def parse_openai_models(provider: str, body: bytes) -> tuple[list[ListedModel], _Page | None]:
    """Parse one ``/v1/models`` body; also returns the page (None for a bare array)."""
    try:
        decoded = _PAGE_OR_LIST.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedResponse(f"{provider} sent a malformed model list: {exc}",
                                provider=provider) from None
    if isinstance(decoded, list):
        return [_listed(provider, m) for m in decoded], None
    return [_listed(provider, m) for m in decoded.data], decoded


class OpenAIModelLister:
    """Lists an OpenAI-compatible server's models (``Authorization: Bearer`` in ``http``)."""

    def __init__(self, http: ProviderHttp, path: str = "/v1/models") -> None:
        self._http = http
        self._path = path

    @property
    def provider(self) -> str:
        return self._http.name

    async def list_models(self) -> Listing:
        """Every page of the list (one for most servers)."""
        models: list[ListedModel] = []
        params: dict[str, str] = {}
        for pages in range(1, MAX_PAGES + 1):
            response = await self._http.request("GET", self._path, params=params or None)
            batch, page = parse_openai_models(self.provider, response.content)
            models.extend(batch)
            if page is None or not page.has_more:
                return Listing(provider=self.provider, models=tuple(models), pages=pages)
            if not page.last_id or page.last_id == params.get("after"):
                raise MalformedResponse(f"{self.provider} says has_more without a new last_id",
                                        provider=self.provider)
            params = {"after": page.last_id}
        raise MalformedResponse(f"{self.provider} list exceeds {MAX_PAGES} pages",
                                provider=self.provider)


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    model: str | None = None
    usage: _Usage | None = None


_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls",
    "function_call": "tool_calls", "content_filter": "content_filter",
}


class OpenAIChatClient(ChatClientBase):
    """``POST /v1/chat/completions`` for one model; the reply's text is the first choice's
    message.

    ``max_tokens_field`` is ``max_tokens`` (understood by every compatible server) or
    ``max_completion_tokens`` (required by OpenAI's reasoning models).
    """

    def __init__(self, http: ProviderHttp, model: str, *,
                 max_tokens_field: str = "max_tokens") -> None:
        super().__init__(http, model)
        self._max_tokens_field = max_tokens_field

    async def _post(self, messages: Sequence[ChatMessage], max_tokens: int, timeout_s: float
                    ) -> httpx.Response:
        body = {"model": self._model, self._max_tokens_field: max_tokens,
                "messages": [{"role": m.role, "content": m.content} for m in messages]}
        return await self._http.request("POST", "/v1/chat/completions", json=body,
                                        timeout_s=timeout_s)

    def _reply(self, response: httpx.Response, latency: float) -> ChatReply:
        parsed = decode_body(response, _Completion, self.provider)
        if not parsed.choices or parsed.choices[0].message.content is None:
            raise MalformedResponse(f"{self.provider} completion has no message text",
                                    provider=self.provider)
        choice = parsed.choices[0]
        usage = parsed.usage or _Usage()
        raw = choice.finish_reason
        return ChatReply(
            provider=self.provider, model=parsed.model or self._model,
            text=choice.message.content or "", input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens, latency_s=latency,
            finish_reason=_FINISH.get(raw or "", "other"), raw_finish_reason=raw,
        )
