"""The reasoning layer on the wire: building its events, and its operations' requests and
replies (``models``, ``route``, ``consult``, ``registry_sync``; see :mod:`.operations`).

Registry events live in namespace ``system`` (subjects ``mnemos.evt.system.model.<id>``,
``.provider.<name>``, ``.ranking.<source>``); consultations in the caller's namespace
(``mnemos.evt.<ns>.consultation.<id>``). One sync tick or one consultation is one causation:
its events share a command id and take their ids from it by index
(:func:`~libs.events.ids.derive_event_id`), so a republished tick is dropped as a duplicate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from libs.events.fields import Seq, ShortText
from libs.events.ids import derive_event_id
from libs.events.model import (
    Actor,
    ConsensusAbstained,
    ConsensusReached,
    ConsultationAnswerReceived,
    ConsultationModelFailed,
    ConsultationStarted,
    EventBase,
    ModelChanged,
    ModelListed,
    ModelRestored,
    ModelRetired,
    ModelSuspect,
    ProviderSynced,
    ProviderSyncFailed,
    RankingPublished,
)
from libs.events.registry import (
    AGGREGATE_CONSULTATION,
    AGGREGATE_MODEL,
    AGGREGATE_PROVIDER,
    AGGREGATE_RANKING,
    ClaimData,
    ClusterData,
    ConsensusAbstainedData,
    ConsensusReachedData,
    ConsultationAnswerReceivedData,
    ConsultationModelFailedData,
    ConsultationStartedData,
    DissentData,
    FailureCode,
    Liveness,
    ModelChangedData,
    ModelListedData,
    ModelRecordData,
    ModelRestoredData,
    ModelRetiredData,
    ModelSuspectData,
    ProviderSyncedData,
    ProviderSyncFailedData,
    RankingEntryData,
    RankingPublishedData,
    model_aggregate_id,
)

__all__ = [
    "REGISTRY_ACTOR",
    "SYSTEM_NAMESPACE",
    "Consult",
    "ConsultAnswerView",
    "ConsultContextView",
    "ConsultFailureView",
    "ConsultResult",
    "ListModels",
    "ModelView",
    "ModelsView",
    "ProviderView",
    "RouteCandidateView",
    "RouteQuery",
    "RouteView",
    "SyncRegistry",
    "SyncReport",
    "consultation_event",
    "registry_event",
]

SYSTEM_NAMESPACE: Final = "system"
"""Where registry events live."""
REGISTRY_ACTOR: Final = Actor(principal="service:registry_sync")
"""The actor of every registry event (the service's own, not a caller's)."""

RegistryPayloadData = (
    ModelListedData | ModelChangedData | ModelSuspectData | ModelRetiredData
    | ModelRestoredData | ProviderSyncedData | ProviderSyncFailedData | RankingPublishedData
)
ConsultationPayloadData = (
    ConsultationStartedData | ConsultationAnswerReceivedData | ConsultationModelFailedData
    | ConsensusReachedData | ConsensusAbstainedData
)

_REGISTRY: Final[dict[type, type[EventBase]]] = {
    ModelListedData: ModelListed, ModelChangedData: ModelChanged,
    ModelSuspectData: ModelSuspect, ModelRetiredData: ModelRetired,
    ModelRestoredData: ModelRestored, ProviderSyncedData: ProviderSynced,
    ProviderSyncFailedData: ProviderSyncFailed, RankingPublishedData: RankingPublished,
}
_CONSULTATION: Final[dict[type, type[EventBase]]] = {
    ConsultationStartedData: ConsultationStarted,
    ConsultationAnswerReceivedData: ConsultationAnswerReceived,
    ConsultationModelFailedData: ConsultationModelFailed,
    ConsensusReachedData: ConsensusReached, ConsensusAbstainedData: ConsensusAbstained,
}


def _registry_aggregate(payload: RegistryPayloadData) -> tuple[str, str]:
    if isinstance(payload, ModelListedData):
        return AGGREGATE_MODEL, model_aggregate_id(payload.record.key)
    if isinstance(payload, ProviderSyncedData | ProviderSyncFailedData):
        return AGGREGATE_PROVIDER, payload.provider
    if isinstance(payload, RankingPublishedData):
        return AGGREGATE_RANKING, payload.source
    return AGGREGATE_MODEL, model_aggregate_id(payload.key)


def registry_event(payload: RegistryPayloadData, *, command_id: str, index: int,
                   at: datetime) -> EventBase:
    """The ``index``-th event of the sync tick ``command_id`` (a UUIDv7)."""
    cls = _REGISTRY[type(payload)]
    aggregate, aggregate_id = _registry_aggregate(payload)
    return cls(id=derive_event_id(SYSTEM_NAMESPACE, command_id, index), schema=cls.SCHEMA,
               ns=SYSTEM_NAMESPACE, aggregate=aggregate, aggregate_id=aggregate_id,
               actor=REGISTRY_ACTOR, command_id=command_id, correlation_id=command_id, at=at,
               data=payload)  # type: ignore[call-arg]


def consultation_event(ns: str, payload: ConsultationPayloadData, *, actor: Actor,
                       index: int, at: datetime) -> EventBase:
    """The ``index``-th event of a consultation (its id is the command id) in ``ns``."""
    cls = _CONSULTATION[type(payload)]
    cid = payload.consultation_id
    return cls(id=derive_event_id(ns, cid, index), schema=cls.SCHEMA, ns=ns,
               aggregate=AGGREGATE_CONSULTATION, aggregate_id=cid, actor=actor,
               command_id=cid, correlation_id=cid, at=at,
               data=payload)  # type: ignore[call-arg]


# --- operations ---------------------------------------------------------------------------

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
"""A model key, provider, family or capability name in a filter."""
Profile = Literal["cheap", "balanced", "best"]
Uuid7 = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ListModels(_Request, frozen=True, kw_only=True):
    """``models``: the registry, filtered (all filters must hold), in key order, paged by
    ``after``; ``key`` names one model (its record with each field's source)."""

    key: Name | None = None
    provider: Name | None = None
    family: Name | None = None
    capability: Name | None = None
    liveness: Liveness | None = None
    include_retired: bool = True
    after: Name | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after_seq: Seq | None = None
    """Read-your-writes: wait until the read models include this stream sequence (e.g. a
    ``registry_sync`` report's ``last_seq``)."""


class ModelView(msgspec.Struct, frozen=True, kw_only=True):
    """One registry entry as the read model holds it."""

    key: str
    record: ModelRecordData
    liveness: Liveness
    missing_syncs: int
    suspect_reason: str | None = None
    suspect_detail: str | None = None
    retired_reason: str | None = None
    stale: bool
    ranking: RankingEntryData | None = None
    listed_seq: int
    updated_seq: int
    updated_at: datetime


class ProviderView(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's last sync: the outcome, and the last success and failure."""

    provider: str
    last_outcome: Literal["synced", "failed"]
    last_seq: int
    last_synced_at: datetime | None = None
    last_failed_at: datetime | None = None
    last_sync: ProviderSyncedData | None = None
    last_error: ProviderSyncFailedData | None = None


class ModelsView(msgspec.Struct, frozen=True, kw_only=True):
    """A page of models (``next_after`` continues it), the count matching the filters, and
    every provider's sync status."""

    models: tuple[ModelView, ...]
    total: int
    next_after: str | None = None
    providers: tuple[ProviderView, ...] = ()


class RouteQuery(_Request, frozen=True, kw_only=True):
    """``route``: which models a request would go to, best first, and why."""

    capabilities: tuple[Name, ...] = ("chat",)
    input_modalities: tuple[Name, ...] = ("text",)
    context_tokens: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 0
    output_tokens: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 0
    profile: Profile = "balanced"
    include_suspect: bool = False
    exclude: tuple[Name, ...] = ()
    limit: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8


class RouteCandidateView(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate with its score and the score's components (each 0..1)."""

    key: str
    family: str
    score: float
    quality: float
    cost: float
    latency: float
    reliability: float


class RouteView(msgspec.Struct, frozen=True, kw_only=True):
    """The decision: candidates (the failover order), models considered, rejections by
    filter, the profile's weights and the stream sequence of the registry it used."""

    candidates: tuple[RouteCandidateView, ...]
    considered: int
    rejected: dict[str, int]
    profile: Profile
    weights: dict[str, float]
    registry_seq: int


class Consult(_Request, frozen=True, kw_only=True):
    """``consult``: ask ``models`` routed models of different families, reach consensus by
    content. ``context`` adds the namespace's memories relevant to ``context_query`` (default:
    the prompt) within ``context_tokens``; ``consultation_id`` (a UUIDv7) makes a retry safe."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    profile: Profile = "balanced"
    models: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    context: bool = True
    context_query: Annotated[str, msgspec.Meta(max_length=2_000)] | None = None
    context_tokens: Annotated[int, msgspec.Meta(ge=0, le=32_000)] = 2_000
    discrete: bool | None = None
    timeout_s: Annotated[float, msgspec.Meta(ge=0.1, le=120.0)] = 30.0
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=8_192)] = 512
    consultation_id: Uuid7 | None = None


class ConsultAnswerView(msgspec.Struct, frozen=True, kw_only=True):
    """One model's answer."""

    key: str
    family: str
    text: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None


class ConsultFailureView(msgspec.Struct, frozen=True, kw_only=True):
    """A call that failed (and what took its slot)."""

    key: str
    error_code: FailureCode
    message: str
    failover_to: str | None = None


class ConsultContextView(msgspec.Struct, frozen=True, kw_only=True):
    """The memory context sent with the prompt: which memories, how big, its hash."""

    memory_ids: tuple[str, ...] = ()
    chars: int = 0
    hash: str
    receipts: tuple[str, ...] = ()
    source: Literal["none", "search", "assembly"] = "none"


class ConsultResult(msgspec.Struct, frozen=True, kw_only=True):
    """The consensus (``reached``) or the abstention, with everything it was built from."""

    consultation_id: str
    reached: bool
    method: Literal["exact", "semantic", "none"]
    answer_key: str | None = None
    answer: str | None = None
    agreement: float
    threshold: float
    reason: str | None = None
    clusters: tuple[ClusterData, ...] = ()
    claims: tuple[ClaimData, ...] = ()
    dissent: tuple[DissentData, ...] = ()
    answers: tuple[ConsultAnswerView, ...] = ()
    failed: tuple[ConsultFailureView, ...] = ()
    context: ConsultContextView
    last_seq: int
    duplicate: bool = False


class SyncRegistry(_Request, frozen=True, kw_only=True):
    """``registry_sync``: sync the providers, the leaderboard, or both (``all``), now."""

    target: Literal["providers", "leaderboard", "all"]
    reason: ShortText | None = None


class SyncReport(msgspec.Struct, frozen=True, kw_only=True):
    """What an on-demand sync published."""

    target: str
    events: int
    by_type: dict[str, int]
    failed_providers: tuple[str, ...] = ()
    last_seq: int
    duration_s: float
