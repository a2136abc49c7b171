"""Anthropic: ``GET /v1/models`` (paged with ``after_id``/``limit``) and ``POST /v1/messages``.

Authentication is ``x-api-key`` plus ``anthropic-version`` (set on the :class:`ProviderHttp`
by :func:`libs.llm.factory.anthropic_http`). The list answers ``{data: [{type, id,
display_name, created_at}], has_more, first_id, last_id}``; the next page is asked for with
``after_id=<last_id>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import httpx
import msgspec

from libs.llm.chat_base import ChatClientBase, system_text
from libs.llm.errors import MalformedResponse
from libs.llm.transport import ProviderHttp, decode_body
from libs.llm.types import (
    ChatMessage,
    ChatReply,
    FinishReason,
    ListedModel,
    Listing,
    clean_int,
    clean_text,
)

__all__ = ["ANTHROPIC_VERSION", "AnthropicChatClient", "AnthropicModelLister"]

ANTHROPIC_VERSION: Final = "2023-06-01"
"""The ``anthropic-version`` header value this client speaks."""
PAGE_LIMIT: Final = 1000
"""``limit`` asked per page (the API's maximum)."""
MAX_PAGES: Final = 1000
"""Guard against a list whose ``has_more`` never ends."""


class _Model(msgspec.Struct):
    id: str
    type: str = "model"
    display_name: Any = None
    created_at: Any = None
    max_input_tokens: Any = None
    max_tokens: Any = None


class _Page(msgspec.Struct):
    data: list[_Model]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


def _listed(provider: str, raw: _Model) -> ListedModel:
    model_id = clean_text(raw.id)
    if model_id is None:
        raise MalformedResponse(f"{provider} listed a model with an invalid id",
                                provider=provider)
    return ListedModel(
        provider=provider, model_id=model_id, display_name=clean_text(raw.display_name),
        owned_by="anthropic", created_at=clean_text(raw.created_at, 64), kind="chat",
        context_window=clean_int(raw.max_input_tokens),
        max_output_tokens=clean_int(raw.max_tokens),
    )


class AnthropicModelLister:
    """Walks every page of Anthropic's model list."""

    def __init__(self, http: ProviderHttp, page_limit: int = PAGE_LIMIT) -> None:
        self._http = http
        self._limit = page_limit

    @property
    def provider(self) -> str:
        return self._http.name

    async def list_models(self) -> Listing:
        """Every page, following ``last_id`` while ``has_more``."""
        models: list[ListedModel] = []
        after: str | None = None
        for pages in range(1, MAX_PAGES + 1):
            params = {"limit": str(self._limit)} | ({"after_id": after} if after else {})
            response = await self._http.request("GET", "/v1/models", params=params)
            page = decode_body(response, _Page, self.provider)
            models.extend(_listed(self.provider, m) for m in page.data)
            if not page.has_more:
                return Listing(provider=self.provider, models=tuple(models), pages=pages)
            if not page.last_id or page.last_id == after:
                raise MalformedResponse(f"{self.provider} says has_more without a new last_id",
                                        provider=self.provider)
            after = page.last_id
        raise MalformedResponse(f"{self.provider} list exceeds {MAX_PAGES} pages",
                                provider=self.provider)


class _Block(msgspec.Struct):
    type: str
    text: str | None = None


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _Message(msgspec.Struct):
    content: list[_Block]
    model: str | None = None
    stop_reason: str | None = None
    usage: _Usage | None = None


_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "other",
}


class AnthropicChatClient(ChatClientBase):
    """``POST /v1/messages`` for one model; system turns become the top-level ``system``; the
    reply's text joins the answer's text blocks."""

    async def _post(self, messages: Sequence[ChatMessage], max_tokens: int, timeout_s: float
                    ) -> httpx.Response:
        body: dict[str, object] = {
            "model": self._model, "max_tokens": max_tokens,
            "messages": [{"role": m.role, "content": m.content}
                         for m in messages if m.role != "system"],
        }
        if system := system_text(messages):
            body["system"] = system
        return await self._http.request("POST", "/v1/messages", json=body, timeout_s=timeout_s)

    def _reply(self, response: httpx.Response, latency: float) -> ChatReply:
        parsed = decode_body(response, _Message, self.provider)
        texts = [b.text for b in parsed.content if b.type == "text" and b.text is not None]
        if not texts:
            raise MalformedResponse(f"{self.provider} message has no text block",
                                    provider=self.provider)
        usage = parsed.usage or _Usage()
        raw = parsed.stop_reason
        return ChatReply(
            provider=self.provider, model=parsed.model or self._model, text="".join(texts),
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            latency_s=latency, finish_reason=_FINISH.get(raw or "", "other"),
            raw_finish_reason=raw,
        )
