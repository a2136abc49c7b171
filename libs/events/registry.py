"""Payloads of the reasoning layer's events: the model registry and consultations (design §7).

These are the ``...Data`` payloads only; the lead wires them into event classes of
:mod:`libs.events.model`. Registry events live in the reserved ``system`` namespace: a model's
aggregate is ``model`` with id :func:`model_aggregate_id` (a subject token derived from the model
key, since a key such as ``openai/gpt-4o`` holds a slash); provider-level events use aggregate
``provider`` with the provider name as id, ranking events aggregate ``ranking``. Consultations
are per namespace, aggregate ``consultation``.

A *model key* is ``<provider>/<model id>``: the same model served by two providers is two
registry entries, because availability, price and latency are per provider.
"""

from __future__ import annotations

from typing import Final, Literal

import blake3
import msgspec

__all__ = [
    "AGGREGATE_CONSULTATION",
    "AGGREGATE_MODEL",
    "AGGREGATE_PROVIDER",
    "AGGREGATE_RANKING",
    "CATALOG_FIELDS",
    "ClaimData",
    "ClusterData",
    "ConsensusAbstainedData",
    "ConsensusReachedData",
    "ConsultationAnswerReceivedData",
    "ConsultationModelFailedData",
    "ConsultationStartedData",
    "DissentData",
    "FailureCode",
    "FieldChangeData",
    "FieldSource",
    "FieldValue",
    "Liveness",
    "ModelChangedData",
    "ModelListedData",
    "ModelRecordData",
    "ModelRestoredData",
    "ModelRetiredData",
    "ModelSuspectData",
    "ProviderSyncFailedData",
    "ProviderSyncedData",
    "RankingEntryData",
    "RankingPublishedData",
    "model_aggregate_id",
]

AGGREGATE_MODEL: Final = "model"
"""Aggregate of one registry entry (events listed/changed/suspect/retired/restored)."""
AGGREGATE_PROVIDER: Final = "provider"
"""Aggregate of a provider's sync outcomes (synced, sync failed); id = provider name."""
AGGREGATE_RANKING: Final = "ranking"
"""Aggregate of leaderboard publications; id = the leaderboard source name."""
AGGREGATE_CONSULTATION: Final = "consultation"
"""Aggregate of one multi-model consultation; id = the consultation id."""

FieldSource = Literal["provider", "price_table", "leaderboard", "alias", "default"]
"""Where a record field's value came from; ``default`` means no source knew it."""

Liveness = Literal["active", "suspect", "retired"]
"""A model's availability state (see services.registry_sync.liveness)."""

FieldValue = str | int | float | bool | None | tuple[str, ...]
"""A record field's value as it appears in a field diff."""

FailureCode = Literal[
    "rate_limited", "timeout", "server_error", "malformed", "rejected", "circuit_open",
    "unreachable",
]
"""Why a provider call failed; the first five mirror libs.llm's error classes."""

def model_aggregate_id(key: str) -> str:
    """Subject-safe aggregate id of a model key: ``m`` + 31 hex digits of its blake3."""
    return "m" + blake3.blake3(key.encode("utf-8")).hexdigest()[:31]


class ModelRecordData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The catalogue facts of one model at one provider, each field with its source.

    Prices are USD per token. ``capabilities`` and the modality tuples are sorted. ``sources``
    maps every field name below (except ``key``, ``provider``, ``model_id``) to its
    :data:`FieldSource`. Availability is not a record field: it is the liveness state, moved by
    its own events. Leaderboard facts arrive through :class:`RankingPublishedData`.
    """

    key: str
    provider: str
    model_id: str
    display_name: str | None = None
    family: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: tuple[str, ...] = ()
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    deprecation_date: str | None = None
    created_at: str | None = None
    sources: dict[str, FieldSource] = {}


CATALOG_FIELDS: Final[tuple[str, ...]] = (
    "display_name", "family", "context_window", "max_output_tokens", "capabilities",
    "input_modalities", "output_modalities", "input_cost_per_token", "output_cost_per_token",
    "deprecation_date", "created_at",
)
"""The record fields a sync compares (``ModelChanged`` lists those that differ)."""


class ModelListedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of *ModelListed*: a provider lists a model the registry did not know."""

    record: ModelRecordData


class FieldChangeData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One field of a record that changed between two syncs."""

    field: str
    old: FieldValue
    new: FieldValue
    source: FieldSource


class ModelChangedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of *ModelChanged*: the fields (sorted by name) whose value differs."""

    key: str
    changes: tuple[FieldChangeData, ...]


class ModelSuspectData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of *ModelSuspect*: missing from its provider's list once, or a probe failed."""

    key: str
    reason: Literal["missing", "probe_failed"]
    missing_syncs: int
    detail: str | None = None


class ModelRetiredData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of *ModelRetired*: missing on N consecutive syncs, or its deprecation date passed."""

    key: str
    reason: Literal["missing", "deprecated"]
    missing_syncs: int
    deprecation_date: str | None = None


class ModelRestoredData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of *ModelRestored*: a suspect or retired model is listed (and healthy) again."""

    key: str
    previous: Literal["suspect", "retired"]


class ProviderSyncedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of *ProviderSynced*: a provider's list was fetched in full (the sync log)."""

    provider: str
    models_seen: int
    pages: int
    listed: int = 0
    changed: int = 0
    suspect: int = 0
    retired: int = 0
    restored: int = 0


class ProviderSyncFailedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *ProviderSyncFailed*: its models are kept, marked stale, liveness unchanged."""

    provider: str
    error_code: FailureCode
    message: str
    stale_models: int


class RankingEntryData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One leaderboard row matched to one registry model, with its routing weight."""

    key: str
    leaderboard_name: str
    matched_by: Literal["alias", "exact"]
    score: float
    ci_lower: float | None = None
    ci_upper: float | None = None
    votes: int | None = None
    rank: int | None = None
    routing_weight: float


class RankingPublishedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *RankingPublished*: a leaderboard (one category) joined to the registry.

    ``unmatched_names`` is sorted and capped (``unmatched`` holds the full count); models absent
    from ``entries`` have no leaderboard facts after this publication.
    """

    source: str
    category: str
    publish_date: str | None = None
    rows: int
    pages: int
    entries: tuple[RankingEntryData, ...]
    unmatched: int
    unmatched_names: tuple[str, ...] = ()
    malformed_rows: int = 0


# --- consultations ------------------------------------------------------------------------


class ConsultationStartedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *ConsultationStarted*: the prompt, its context and the models routed to.

    ``context_hash`` is blake3 of the context text the caller assembled; ``context_receipts``
    names the compression receipts it was built from.
    """

    consultation_id: str
    prompt: str
    context_hash: str
    context_chars: int
    context_receipts: tuple[str, ...] = ()
    profile: str
    planned: tuple[str, ...]
    candidates: int
    timeout_s: float


class ConsultationAnswerReceivedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *ConsultationAnswerReceived*: one model's answer; cost is None if unpriced."""

    consultation_id: str
    key: str
    family: str
    text: str
    text_hash: str
    model_reported: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    finish_reason: str


class ConsultationModelFailedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *ConsultationModelFailed*: a call failed; ``failover_to`` took its slot."""

    consultation_id: str
    key: str
    error_code: FailureCode
    message: str
    latency_ms: float
    failover_to: str | None = None


class ClusterData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A group of answers that agree; ``cohesion`` is their mean pairwise similarity."""

    members: tuple[str, ...]
    cohesion: float
    label: str | None = None


class ClaimData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One sentence of the chosen answer and which other answers support or contradict it."""

    text: str
    supported_by: tuple[str, ...] = ()
    contradicted_by: tuple[str, ...] = ()


class DissentData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An answer outside the winning cluster, with its similarity to the chosen answer."""

    key: str
    similarity: float
    text: str


class ConsensusReachedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *ConsensusReached*: the medoid of the largest agreeing cluster, by content."""

    consultation_id: str
    method: Literal["exact", "semantic"]
    answer_key: str
    answer: str
    agreement: float
    threshold: float
    clusters: tuple[ClusterData, ...]
    claims: tuple[ClaimData, ...]
    dissent: tuple[DissentData, ...]


class ConsensusAbstainedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of *ConsensusAbstained*: agreement below the threshold (or too few answers)."""

    consultation_id: str
    method: Literal["exact", "semantic", "none"]
    reason: str
    agreement: float
    threshold: float
    answers: int
    clusters: tuple[ClusterData, ...] = ()
    dissent: tuple[DissentData, ...] = ()
