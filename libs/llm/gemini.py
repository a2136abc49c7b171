"""Google Gemini API: ``models.list`` (paged with ``pageToken``) and ``generateContent``.

The key travels as the ``x-goog-api-key`` header (set by :func:`libs.llm.factory.gemini_http`)
or, where a deployment needs it, as ``?key=``; the key is never put into an error message.
``models.list`` answers ``{models: [{name: "models/<id>", displayName, inputTokenLimit,
outputTokenLimit, supportedGenerationMethods}], nextPageToken}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import quote

import httpx
import msgspec

from libs.llm.chat_base import ChatClientBase, system_text
from libs.llm.errors import MalformedResponse, ProviderRejected
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

__all__ = ["GeminiChatClient", "GeminiModelLister", "capabilities_from_methods"]

API_PREFIX: Final = "/v1beta"
"""Path prefix of the Gemini API version used."""
PAGE_SIZE: Final = 1000
"""``pageSize`` asked per page (the API caps it)."""
MAX_PAGES: Final = 1000
"""Guard against a token chain that never ends."""
_METHOD_CAPABILITY: Final = {
    "generateContent": "chat", "embedContent": "embeddings", "predict": "image_generation",
    "bidiGenerateContent": "live", "generateAnswer": "chat",
}


class _Model(msgspec.Struct, rename="camel"):
    name: str
    display_name: Any = None
    input_token_limit: Any = None
    output_token_limit: Any = None
    supported_generation_methods: Any = None
    thinking: Any = None


class _Page(msgspec.Struct, rename="camel"):
    models: list[_Model] = []
    next_page_token: str | None = None


def capabilities_from_methods(methods: object, thinking: object = None) -> tuple[str, ...]:
    """Registry capabilities implied by ``supportedGenerationMethods`` (sorted)."""
    found = set()
    if isinstance(methods, list):
        found = {_METHOD_CAPABILITY[m] for m in methods if isinstance(m, str)
                 and m in _METHOD_CAPABILITY}
    if thinking is True:
        found.add("reasoning")
    return tuple(sorted(found))


def _listed(provider: str, raw: _Model) -> ListedModel:
    model_id = clean_text(raw.name.removeprefix("models/"))
    if model_id is None or not raw.name.startswith("models/"):
        raise MalformedResponse(f"{provider} listed a model with an invalid name",
                                provider=provider)
    capabilities = capabilities_from_methods(raw.supported_generation_methods, raw.thinking)
    return ListedModel(
        provider=provider, model_id=model_id, display_name=clean_text(raw.display_name),
        owned_by="google", kind="chat" if "chat" in capabilities else (
            "embedding" if "embeddings" in capabilities else None),
        context_window=clean_int(raw.input_token_limit),
        max_output_tokens=clean_int(raw.output_token_limit), capabilities=capabilities,
    )


class GeminiModelLister:
    """Walks every page of ``models.list``."""

    def __init__(self, http: ProviderHttp, *, key_in_query: str | None = None,
                 page_size: int = PAGE_SIZE) -> None:
        self._http = http
        self._key = key_in_query
        self._page_size = page_size

    @property
    def provider(self) -> str:
        return self._http.name

    async def list_models(self) -> Listing:
        """Every page, following ``nextPageToken`` until it is absent or empty."""
        models: list[ListedModel] = []
        token: str | None = None
        seen: set[str] = set()
        for pages in range(1, MAX_PAGES + 1):
            params = {"pageSize": str(self._page_size)}
            params |= {"pageToken": token} if token else {}
            params |= {"key": self._key} if self._key else {}
            response = await self._http.request("GET", f"{API_PREFIX}/models", params=params)
            page = decode_body(response, _Page, self.provider)
            models.extend(_listed(self.provider, m) for m in page.models)
            token = page.next_page_token or None
            if token is None:
                return Listing(provider=self.provider, models=tuple(models), pages=pages)
            if token in seen:
                raise MalformedResponse(f"{self.provider} repeated a page token",
                                        provider=self.provider)
            seen.add(token)
        raise MalformedResponse(f"{self.provider} list exceeds {MAX_PAGES} pages",
                                provider=self.provider)


class _Part(msgspec.Struct):
    text: str | None = None
    thought: bool = False


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _Response(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = []
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    prompt_feedback: _PromptFeedback | None = None


_FINISH: Final[dict[str, FinishReason]] = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
    "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "MALFORMED_FUNCTION_CALL": "other",
}


class GeminiChatClient(ChatClientBase):
    """``POST /v1beta/models/{model}:generateContent``; system turns become
    ``systemInstruction``, assistant turns the ``model`` role; thought parts are left out of
    the reply's text."""

    def __init__(self, http: ProviderHttp, model: str, *,
                 key_in_query: str | None = None) -> None:
        super().__init__(http, model)
        self._key = key_in_query

    async def _post(self, messages: Sequence[ChatMessage], max_tokens: int, timeout_s: float
                    ) -> httpx.Response:
        body: dict[str, object] = {
            "contents": [{"role": "model" if m.role == "assistant" else "user",
                          "parts": [{"text": m.content}]}
                         for m in messages if m.role != "system"],
            "generationConfig": {"maxOutputTokens": max_tokens},
        }
        if system := system_text(messages):
            body["systemInstruction"] = {"parts": [{"text": system}]}
        path = f"{API_PREFIX}/models/{quote(self._model, safe='')}:generateContent"
        return await self._http.request(
            "POST", path, json=body, timeout_s=timeout_s,
            params={"key": self._key} if self._key else None)

    def _reply(self, response: httpx.Response, latency: float) -> ChatReply:
        parsed = decode_body(response, _Response, self.provider)
        if not parsed.candidates:
            reason = parsed.prompt_feedback.block_reason if parsed.prompt_feedback else None
            if reason:
                raise ProviderRejected(f"{self.provider} blocked the prompt: {reason}",
                                       provider=self.provider)
            raise MalformedResponse(f"{self.provider} answered no candidate",
                                    provider=self.provider)
        candidate = parsed.candidates[0]
        parts = candidate.content.parts if candidate.content else []
        text = "".join(p.text for p in parts if p.text is not None and not p.thought)
        usage = parsed.usage_metadata or _UsageMetadata()
        raw = candidate.finish_reason
        if not text and raw not in _FINISH:
            raise MalformedResponse(f"{self.provider} candidate has no text",
                                    provider=self.provider)
        return ChatReply(
            provider=self.provider, model=parsed.model_version or self._model, text=text,
            input_tokens=usage.prompt_token_count,
            output_tokens=usage.candidates_token_count + usage.thoughts_token_count,
            latency_s=latency, finish_reason=_FINISH.get(raw or "", "other"),
            raw_finish_reason=raw,
        )
