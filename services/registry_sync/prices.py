"""The price and limits table, in the shape of LiteLLM's model_prices_and_context_window.json.

Each key is a model name, optionally prefixed by a provider route (``gemini/gemini-2.5-pro``,
``groq/llama-3.3-70b-versatile``); each value carries ``max_input_tokens``,
``max_output_tokens``, ``input_cost_per_token``, ``output_cost_per_token`` (USD per token),
``supports_*`` flags, ``deprecation_date``, ``litellm_provider`` and ``mode``. The entry
``sample_spec`` documents the format and is skipped. An entry whose fields have the wrong types
is counted as malformed and skipped; the rest of the table still loads.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from libs.events.errors import InvalidInput, Unavailable
from libs.llm.types import clean_float, clean_int

__all__ = ["PriceEntry", "PriceTable", "load_price_table", "parse_price_table"]

SKIPPED_KEYS: Final = frozenset({"sample_spec"})
"""Keys of the LiteLLM file that are documentation, not models."""
_CAPABILITY_FLAGS: Final = {
    "supports_vision": "vision", "supports_function_calling": "tools",
    "supports_tool_choice": "tools", "supports_response_schema": "json",
    "supports_reasoning": "reasoning", "supports_audio_input": "audio",
    "supports_pdf_input": "pdf", "supports_web_search": "web_search",
    "supports_prompt_caching": "prompt_caching",
}
_MODE_CAPABILITY: Final = {"chat": "chat", "completion": "chat", "responses": "chat",
                           "embedding": "embeddings", "image_generation": "image_generation",
                           "audio_transcription": "transcription", "rerank": "rerank",
                           "moderation": "moderation", "audio_speech": "speech"}
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PriceEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One model's limits, prices and capabilities from the table."""

    name: str
    litellm_provider: str | None = None
    mode: str | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    capabilities: tuple[str, ...] = ()
    deprecation_date: str | None = None


class PriceTable(msgspec.Struct, frozen=True, kw_only=True):
    """The loaded table: entries by key, and how many were skipped as malformed."""

    entries: dict[str, PriceEntry]
    malformed: int = 0

    def lookup(self, provider_route: str | None, model_id: str) -> PriceEntry | None:
        """The entry for a model: ``<route>/<id>`` first (``groq/llama-3.3-70b-versatile``),
        then the bare id (OpenAI and Anthropic models are keyed without a route)."""
        if provider_route:
            entry = self.entries.get(f"{provider_route}/{model_id}")
            if entry is not None:
                return entry
        return self.entries.get(model_id)


def _date(value: object) -> str | None:
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def _entry(name: str, raw: Mapping[str, Any]) -> PriceEntry:
    flags = {cap for flag, cap in _CAPABILITY_FLAGS.items() if raw.get(flag) is True}
    mode = raw.get("mode") if isinstance(raw.get("mode"), str) else None
    if mode in _MODE_CAPABILITY:
        flags.add(_MODE_CAPABILITY[mode])
    provider = raw.get("litellm_provider")
    return PriceEntry(
        name=name, litellm_provider=provider if isinstance(provider, str) else None, mode=mode,
        max_input_tokens=clean_int(raw.get("max_input_tokens")),
        max_output_tokens=clean_int(raw.get("max_output_tokens") or raw.get("max_tokens")),
        input_cost_per_token=clean_float(raw.get("input_cost_per_token")),
        output_cost_per_token=clean_float(raw.get("output_cost_per_token")),
        capabilities=tuple(sorted(flags)), deprecation_date=_date(raw.get("deprecation_date")),
    )


def _well_typed(raw: Mapping[str, Any]) -> bool:
    numeric = ("max_input_tokens", "max_output_tokens", "max_tokens", "input_cost_per_token",
               "output_cost_per_token")
    for key in numeric:
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False
    return all(raw.get(flag) in (None, True, False) for flag in _CAPABILITY_FLAGS)


def parse_price_table(body: bytes) -> PriceTable:
    """Parse the table's JSON; raise :class:`InvalidInput` if it is not a JSON object."""
    try:
        raw = msgspec.json.decode(body, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"price table is not a JSON object: {exc}") from None
    entries: dict[str, PriceEntry] = {}
    malformed = 0
    for name, value in raw.items():
        if name in SKIPPED_KEYS:
            continue
        if not isinstance(value, dict) or not name.strip() or "\x00" in name or (
                not _well_typed(value)):
            malformed += 1
            continue
        entries[name] = _entry(name, value)
    return PriceTable(entries=entries, malformed=malformed)


async def load_price_table(source: str | Path, client: httpx.AsyncClient | None = None,
                           timeout_s: float = 30.0) -> PriceTable:
    """Load the table from a file path or an ``http(s)://`` URL."""
    text = str(source)
    if not text.startswith(("http://", "https://")):
        try:
            body = await asyncio.to_thread(Path(text).read_bytes)
            return parse_price_table(body)
        except OSError as exc:
            raise Unavailable(f"price table {text} unreadable: {exc.strerror}") from None
    owned = client is None
    http = client or httpx.AsyncClient()
    try:
        response = await http.get(text, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"price table at {text} failed: {type(exc).__name__}") from None
    finally:
        if owned:
            await http.aclose()
    return parse_price_table(response.content)
