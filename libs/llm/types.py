"""The provider-neutral shapes of libs.llm: listed models, chat messages and replies."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final, Literal, Protocol

import msgspec

from libs.events.errors import InvalidInput

__all__ = [
    "ChatClient",
    "ChatMessage",
    "ChatReply",
    "FinishReason",
    "ListedModel",
    "Listing",
    "ModelLister",
    "check_messages",
    "clean_float",
    "clean_int",
    "clean_text",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
"""Why generation ended, mapped from each provider's own vocabulary."""

MAX_ID_LENGTH: Final = 256
"""Longest model id accepted from a provider list."""
_BAD_TEXT: Final = re.compile(r"[\x00-\x1f\x7f]|[\ud800-\udfff]")


class ListedModel(msgspec.Struct, frozen=True, kw_only=True):
    """One model as a provider's list describes it; None = the provider did not say.

    Prices are USD per token whatever unit the provider used. ``kind`` is the provider's own
    model type when it gives one (``chat``, ``embedding``, ...).
    """

    provider: str
    model_id: str
    display_name: str | None = None
    owned_by: str | None = None
    created_at: str | None = None
    kind: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    capabilities: tuple[str, ...] = ()
    input_modalities: tuple[str, ...] = ()


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's complete model list: every page fetched."""

    provider: str
    models: tuple[ListedModel, ...]
    pages: int


class ModelLister(Protocol):
    """Fetches a provider's full model list."""

    @property
    def provider(self) -> str:
        """The provider name the listing is recorded under."""
        ...

    async def list_models(self) -> Listing:
        """Every page of the provider's list, or a typed error (nothing partial)."""
        ...


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatReply(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer, normalised; ``latency_s`` is measured by the client."""

    provider: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    finish_reason: FinishReason
    raw_finish_reason: str | None = None


class ChatClient(Protocol):
    """One model at one provider, ready to answer. What the compressor's LLM engine calls."""

    @property
    def provider(self) -> str:
        """The provider name."""
        ...

    @property
    def model(self) -> str:
        """The provider's model id."""
        ...

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, timeout_s: float
    ) -> ChatReply:
        """Send the conversation; raise a :mod:`libs.llm.errors` error on failure."""
        ...


def check_messages(messages: Sequence[ChatMessage], max_tokens: int, timeout_s: float) -> None:
    """Reject what no provider should be sent: no turns, a bad budget, text with U+0000."""
    if not messages:
        raise InvalidInput("a chat needs at least one message")
    if not any(m.role == "user" for m in messages):
        raise InvalidInput("a chat needs at least one user message")
    if max_tokens < 1:
        raise InvalidInput("max_tokens must be >= 1", max_tokens=max_tokens)
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise InvalidInput("timeout_s must be a positive number of seconds")
    for message in messages:
        if "\x00" in message.content:
            raise InvalidInput("message content holds U+0000", role=message.role)


def clean_text(value: object, limit: int = MAX_ID_LENGTH) -> str | None:
    """``value`` if it is a non-blank string without control characters, within ``limit``."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return None
    if _BAD_TEXT.search(value):
        return None
    return value


def clean_int(value: object) -> int | None:
    """A positive int from an int or an integral float/str (providers disagree); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value) if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def clean_float(value: object, scale: float = 1.0) -> float | None:
    """A finite non-negative number (int, float or numeric string) times ``scale``; else None."""
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number * scale
