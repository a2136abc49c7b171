"""What every provider's chat client shares: its identity, the checks on what is sent, and the
one timed POST; a provider says only how it shapes the request and reads the reply."""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence

import httpx

from libs.llm.transport import ProviderHttp
from libs.llm.types import ChatMessage, ChatReply, check_messages

__all__ = ["ChatClientBase", "system_text"]


def system_text(messages: Sequence[ChatMessage]) -> str:
    """The system turns joined, for providers that take them apart from the conversation."""
    return "\n\n".join(m.content for m in messages if m.role == "system")


class ChatClientBase(abc.ABC):
    """One model of one provider (:class:`libs.llm.types.ChatClient`)."""

    def __init__(self, http: ProviderHttp, model: str) -> None:
        self._http = http
        self._model = model

    @property
    def provider(self) -> str:
        return self._http.name

    @property
    def model(self) -> str:
        return self._model

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, timeout_s: float
    ) -> ChatReply:
        """One answer to ``messages``, within ``timeout_s`` (retries included)."""
        check_messages(messages, max_tokens, timeout_s)
        started = time.perf_counter()
        response = await self._post(messages, max_tokens, timeout_s)
        return self._reply(response, time.perf_counter() - started)

    @abc.abstractmethod
    async def _post(self, messages: Sequence[ChatMessage], max_tokens: int, timeout_s: float
                    ) -> httpx.Response:
        """Send the provider's request (through ``self._http``); its 2xx response."""

    @abc.abstractmethod
    def _reply(self, response: httpx.Response, latency_s: float) -> ChatReply:
        """The reply read from the provider's response (typed errors when it is malformed)."""
