"""The normalised model record: the provider's list joined with the price table (pure).

Precedence per field: the provider's own list (the truth for what it serves), then the price
table, then the explicit family alias table for ``family``, then a documented default. Each
field's winner is written into ``record.sources``.

Defaults: ``family`` by :data:`FAMILY_PREFIXES` on the id's last path segment, else the model's
owner, else the provider; ``capabilities`` ``("chat",)`` for a model whose kind nobody states
(OpenAI-compatible servers list chat models unless they say otherwise); modalities ``text``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Final, TypeVar

from libs.events.registry import FieldSource, ModelRecordData
from libs.llm.types import ListedModel
from services.registry_sync.prices import PriceEntry, PriceTable

__all__ = ["FAMILY_PREFIXES", "build_record", "build_records", "family_of", "model_key"]

FAMILY_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("claude", "claude"), ("gpt", "gpt"), ("chatgpt", "gpt"), ("o1", "openai-o"),
    ("o3", "openai-o"), ("o4", "openai-o"), ("gemini", "gemini"), ("gemma", "gemma"),
    ("llama", "llama"), ("meta-llama", "llama"), ("mistral", "mistral"),
    ("mixtral", "mistral"), ("codestral", "mistral"), ("qwen", "qwen"), ("qwq", "qwen"),
    ("deepseek", "deepseek"), ("grok", "grok"), ("command", "command"), ("phi", "phi"),
    ("kimi", "kimi"), ("glm", "glm"),
)
"""Id prefix -> family, tried in order on the lower-cased last segment of the model id."""
T = TypeVar("T")
_KIND_CAPABILITY: Final = {"chat": "chat", "language": "chat", "code": "chat",
                           "embedding": "embeddings", "image": "image_generation",
                           "rerank": "rerank", "moderation": "moderation"}
_CAPABILITY_MODALITY: Final = {"vision": "image", "audio": "audio", "pdf": "file"}


def model_key(provider: str, model_id: str) -> str:
    """The registry key of a model at a provider."""
    return f"{provider}/{model_id}"


def family_of(model_id: str, owned_by: str | None, provider: str,
              aliases: Mapping[str, str]) -> tuple[str, FieldSource]:
    """The model's family and where it came from (alias glob patterns first)."""
    for pattern, family in aliases.items():
        if fnmatch.fnmatchcase(model_id, pattern):
            return family, "alias"
    last = model_id.rsplit("/", 1)[-1].casefold()
    for prefix, family in FAMILY_PREFIXES:
        if last.startswith(prefix):
            return family, "default"
    return (owned_by or provider).casefold().replace(" ", "-"), "default"


def _capabilities(listed: ListedModel,
                  price: PriceEntry | None) -> tuple[tuple[str, ...], FieldSource]:
    from_provider = set(listed.capabilities)
    if listed.kind in _KIND_CAPABILITY:
        from_provider.add(_KIND_CAPABILITY[listed.kind])
    from_table = set(price.capabilities) if price else set()
    if from_provider:
        return tuple(sorted(from_provider | from_table)), "provider"
    if from_table:
        return tuple(sorted(from_table)), "price_table"
    return ("chat",), "default"


def _first(provider_value: T | None, table_value: T | None,
              sources: dict[str, FieldSource], field: str) -> T | None:
    if provider_value is not None:
        sources[field] = "provider"
        return provider_value
    sources[field] = "price_table" if table_value is not None else "default"
    return table_value


def build_record(listed: ListedModel, price: PriceEntry | None,
                 family_aliases: Mapping[str, str]) -> ModelRecordData:
    """One registry record from a listed model and its price-table entry, if any."""
    sources: dict[str, FieldSource] = {}
    family, sources["family"] = family_of(listed.model_id, listed.owned_by, listed.provider,
                                          family_aliases)
    capabilities, sources["capabilities"] = _capabilities(listed, price)
    if listed.input_modalities:
        inputs, sources["input_modalities"] = listed.input_modalities, "provider"
    else:
        extra = {_CAPABILITY_MODALITY[c] for c in capabilities if c in _CAPABILITY_MODALITY}
        inputs = tuple(sorted({"text"} | extra))
        sources["input_modalities"] = "price_table" if extra else "default"
    outputs = ("image",) if "image_generation" in capabilities else ("text",)
    sources["output_modalities"] = sources["capabilities"] if outputs == ("image",) else "default"
    table = price or PriceEntry(name="")
    display = _first(listed.display_name, None, sources, "display_name")
    return ModelRecordData(
        key=model_key(listed.provider, listed.model_id), provider=listed.provider,
        model_id=listed.model_id, display_name=display, family=family,
        context_window=_first(listed.context_window, table.max_input_tokens, sources,
                              "context_window"),
        max_output_tokens=_first(listed.max_output_tokens, table.max_output_tokens, sources,
                                 "max_output_tokens"),
        capabilities=capabilities, input_modalities=inputs, output_modalities=outputs,
        input_cost_per_token=_first(listed.input_cost_per_token, table.input_cost_per_token,
                                    sources, "input_cost_per_token"),
        output_cost_per_token=_first(listed.output_cost_per_token, table.output_cost_per_token,
                                     sources, "output_cost_per_token"),
        deprecation_date=_first(None, table.deprecation_date, sources, "deprecation_date"),
        created_at=_first(listed.created_at, None, sources, "created_at"),
        sources=dict(sorted(sources.items())),
    )


def build_records(models: tuple[ListedModel, ...], prices: PriceTable | None,
                  price_route: str | None,
                  family_aliases: Mapping[str, str]) -> tuple[ModelRecordData, ...]:
    """Records of one provider's listing, sorted by key (a repeated id keeps its first entry)."""
    seen: dict[str, ModelRecordData] = {}
    for listed in models:
        price = prices.lookup(price_route, listed.model_id) if prices else None
        record = build_record(listed, price, family_aliases)
        seen.setdefault(record.key, record)
    return tuple(seen[k] for k in sorted(seen))
