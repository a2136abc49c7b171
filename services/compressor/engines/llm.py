"""LLM engine: asks a chat model for a compression over an injected :class:`ChatClient`.

The HTTP client (OpenAI-compatible, with its circuit breaker) lives in ``libs/llm``; this engine
only needs the small protocol below, so it is tested with an in-process fake.

The prompt asks for the compressed text between ``<compressed>`` tags. A reply without exactly
one such pair is *malformed* (an error); one with nothing visible inside is *empty* (no output).
The engine does not check the content against the input: an invented number is caught by the
compressor's measurement (precision), never here. The engine enforces its own timeout
(:attr:`LlmEngine.timeout_s`) whatever the client does.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Final, Literal, Protocol

import msgspec

from services.compressor.engines.base import (
    Candidate,
    CompressionRequest,
    EngineError,
    EngineTimeout,
    NoOutput,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "PROMPT_VERSION",
    "ChatClient",
    "ChatMessage",
    "ChatReply",
    "LlmEngine",
    "build_messages",
    "parse_reply",
]

PROMPT_VERSION: Final = "p1"
"""Version of the prompt below; part of the engine version, so of the receipt id."""

DEFAULT_TIMEOUT_S: Final = 20.0
"""Default bound on one LLM compression, in seconds."""

_SYSTEM: Final = (
    "You compress notes kept in the memory of an AI agent. Rewrite the text the user gives you "
    "so that it is as short as possible while keeping every fact. Rules: copy every number, "
    "amount, percentage, date, time, duration, URL, email, file path, version, identifier, id "
    "and code snippet exactly as written; keep every negation (not, no, never, without, except) "
    "with what it negates; never add a fact, number or name that is not in the text; prefer "
    "short 'key: value' lines for settings, decisions and people. Reply with the compressed "
    "text only, between <compressed> and </compressed>."
)
_TAGGED: Final = re.compile(r"<compressed>(.*?)</compressed>", re.DOTALL)


class ChatMessage(msgspec.Struct, frozen=True):
    """One message of a chat completion request."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatReply(msgspec.Struct, frozen=True, kw_only=True):
    """A chat completion: the text, the model that answered and its token usage."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int


class ChatClient(Protocol):
    """What the LLM engine needs of a chat endpoint (implemented in ``libs/llm``)."""

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                       timeout_s: float) -> ChatReply:
        """One chat completion; raises ``Unavailable`` when the provider cannot answer."""
        ...


def build_messages(request: CompressionRequest) -> tuple[ChatMessage, ...]:
    """The messages sent for ``request``: the rules, then the text with its target size."""
    target = max(1, math.floor(request.target_ratio * request.input_tokens))
    focus = f"\nKeep above all what matters for: {request.query}" if request.query else ""
    user = (f"Compress to about {target} tokens (the text has {request.input_tokens}).{focus}\n"
            f"<text>\n{request.text}\n</text>")
    return (ChatMessage("system", _SYSTEM), ChatMessage("user", user))


def parse_reply(text: str) -> str:
    """The compressed text of a reply; raises EngineError (malformed) or NoOutput (empty)."""
    matches = _TAGGED.findall(text)
    if len(matches) != 1 or text.count("<compressed>") != 1:
        raise EngineError(
            f"malformed reply: expected one <compressed> block, found {len(matches)}",
            reply=text[:200],
        )
    body = str(matches[0]).strip()
    if not body or not any(ch.isprintable() and not ch.isspace() for ch in body):
        raise NoOutput("the model returned an empty compression")
    if "\x00" in body:
        raise EngineError("malformed reply: U+0000 in the compression")
    return body


class LlmEngine:
    """Compression by a chat model; ``model`` names the configured model (engine version)."""

    name: Final = "llm"

    def __init__(self, client: ChatClient, model: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError("timeout_s must be a positive number of seconds")
        self._client = client
        self._model = model
        self._timeout_s = timeout_s

    @property
    def version(self) -> str:
        """``<prompt version>:<model>``."""
        return f"{PROMPT_VERSION}:{self._model}"

    @property
    def timeout_s(self) -> float:
        """The engine's own bound on one compression."""
        return self._timeout_s

    async def compress(self, request: CompressionRequest) -> Candidate:
        """Ask the model; raises EngineTimeout, EngineError or NoOutput (see module)."""
        messages = build_messages(request)
        max_tokens = max(16, request.input_tokens)  # never more than the input is worth
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._client.complete(
                    messages, max_tokens=max_tokens, timeout_s=self._timeout_s
                )
        except TimeoutError:
            raise EngineTimeout(f"no reply within {self._timeout_s:g} s") from None
        body = parse_reply(reply.text)
        return Candidate(
            engine=self.name, engine_version=self.version, kind="rewrite", text=body,
            notes=(f"model {reply.model}; usage {reply.input_tokens} in, "
                   f"{reply.output_tokens} out",),
        )
