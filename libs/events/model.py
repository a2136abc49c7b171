"""The event envelope and the typed payloads of the memory lifecycle.

Events are frozen ``msgspec`` structs forming a tagged union on ``type``. The envelope fields are
common to every event; ``data`` carries the typed payload. ``schema`` is the payload version:
when a payload changes shape, its class gets a higher ``SCHEMA`` and an upcaster in
:mod:`libs.events.upcasting` lifts older stored events on read. Stored events are never rewritten.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar, Final

import msgspec

from libs.events.compression import MemoryCompressedData
from libs.events.registry import (
    ConsensusAbstainedData,
    ConsensusReachedData,
    ConsultationAnswerReceivedData,
    ConsultationModelFailedData,
    ConsultationStartedData,
    ModelChangedData,
    ModelListedData,
    ModelRestoredData,
    ModelRetiredData,
    ModelSuspectData,
    ProviderSyncedData,
    ProviderSyncFailedData,
    RankingPublishedData,
)
from libs.events.security import ApiKeyIssuedData, ApiKeyRevokedData

__all__ = [
    "AGGREGATE_MEMORY",
    "Actor",
    "ApiKeyIssued",
    "ApiKeyRevoked",
    "AuditCheckpointSigned",
    "AuditCheckpointSignedData",
    "Event",
    "EventBase",
    "MemoryBranched",
    "MemoryBranchedData",
    "MemoryCommitted",
    "MemoryCommittedData",
    "MemoryCompressed",
    "MemoryCreated",
    "MemoryCreatedData",
    "MemoryForgotten",
    "MemoryForgottenData",
    "MemoryLinked",
    "MemoryLinkedData",
    "MemoryMerged",
    "MemoryMergedData",
    "MemoryMetadataChanged",
    "MemoryMetadataChangedData",
    "MemoryReverted",
    "MemoryRevertedData",
    "MemoryRevised",
    "MemoryRevisedData",
    "MemoryTagged",
    "MemoryTaggedData",
    "MetadataValue",
    "Provenance",
    "ThreadRef",
    "event_types",
]

AGGREGATE_MEMORY: Final = "memory"
"""Aggregate name of memories, the second-to-last token of their event subjects."""

MetadataValue = str | int | float | bool | None
"""Metadata values are JSON scalars, so that canonical encoding is unambiguous."""


class Actor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who caused an event: the authenticated principal and, for agents, which agent and model."""

    principal: str
    agent_id: str | None = None
    model: str | None = None
    provider: str | None = None


class Provenance(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a memory's content came from (a URL, a conversation id, a tool), if known."""

    source: str | None = None


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type",
                omit_defaults=True):
    """The envelope shared by every event.

    ``id`` is a UUIDv7 derived from the causing command and is also the ``Nats-Msg-Id``;
    ``command_id`` is the causation, ``correlation_id`` ties together everything one request
    (or one agent conversation) caused; ``at`` is UTC. ``command_digest`` fingerprints the
    causing command (see :func:`libs.events.ids.command_digest`), so a command id reused for a
    different command is told apart from a retry; events from before it existed have none (it is
    left out of their encoding, which therefore stays byte-identical).
    """

    SCHEMA: ClassVar[int] = 1

    id: str
    schema: int
    ns: str
    aggregate: str
    aggregate_id: str
    actor: Actor
    command_id: str
    correlation_id: str
    at: datetime
    command_digest: str | None = None


class ThreadRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The thread (a session, a conversation) a memory belongs to, and its place in it.

    ``position`` is the writer's turn order; ``None`` leaves the order to the stream (the read
    models then use the creating event's sequence, which is the order turns were written).
    """

    id: str
    position: int | None = None


class MemoryCreatedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryCreated` (schema 2: ``text`` became ``content``, ``kind`` added;
    schema 3: ``occurred_at``, when what the memory says happened, and ``thread``)."""

    memory_id: str
    version_id: str
    kind: str
    content: str
    content_hash: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, MetadataValue] = {}
    provenance: Provenance = Provenance()
    occurred_at: datetime
    thread: ThreadRef | None = None


class MemoryCreated(EventBase, frozen=True, tag="MemoryCreated"):
    """A new memory with its root version."""

    SCHEMA: ClassVar[int] = 3
    data: MemoryCreatedData


class MemoryRevisedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryRevised`: a new head version with one parent (schema 2:
    ``occurred_at``, the memory's new time of occurrence; ``None`` keeps the current one)."""

    version_id: str
    parent_version_id: str
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue] = {}
    reason: str | None = None
    occurred_at: datetime | None = None


class MemoryRevised(EventBase, frozen=True, tag="MemoryRevised"):
    """The memory's content changed; the new version's parent is the previous head."""

    SCHEMA: ClassVar[int] = 2
    data: MemoryRevisedData


class MemoryTaggedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryTagged`: tags added and removed (each sorted, disjoint)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class MemoryTagged(EventBase, frozen=True, tag="MemoryTagged"):
    """The memory's tag set changed."""

    data: MemoryTaggedData


class MemoryMetadataChangedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of :class:`MemoryMetadataChanged`: keys set (with values) and keys removed."""

    set: dict[str, MetadataValue] = {}
    unset: tuple[str, ...] = ()


class MemoryMetadataChanged(EventBase, frozen=True, tag="MemoryMetadataChanged"):
    """The memory's metadata changed (content and versions are untouched)."""

    data: MemoryMetadataChangedData


class MemoryLinkedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryLinked`: a typed edge to another memory in the same namespace."""

    target_memory_id: str
    relation: str


class MemoryLinked(EventBase, frozen=True, tag="MemoryLinked"):
    """The memory now points at another memory with a named relation."""

    data: MemoryLinkedData


class MemoryForgottenData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryForgotten`: why the memory stops being served."""

    reason: str


class MemoryForgotten(EventBase, frozen=True, tag="MemoryForgotten"):
    """The memory is no longer served by queries; its events stay in the stream for audit."""

    data: MemoryForgottenData


class AuditCheckpointSignedData(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Payload of :class:`AuditCheckpointSigned`: a signed audit-chain head (hex, see PROOF.md)."""

    seq: int
    link: str
    at: str
    public_key: str
    signature: str


class AuditCheckpointSigned(EventBase, frozen=True, tag="AuditCheckpointSigned"):
    """The auditor signed the chain head ``(seq, link, at)`` with its Ed25519 key.

    Aggregate ``audit``, id ``chain``, namespace ``system``; not a memory event.
    """

    data: AuditCheckpointSignedData


# --- the version DAG (design section 6) ------------------------------------------------------
# Every memory starts with branch "main" (libs.dag.DEFAULT_BRANCH) at its root version.
# MemoryRevised stays the commit onto "main" (its shape is unchanged); a commit onto any named
# branch is MemoryCommitted. Version ids never include the branch or the merge strategy.


class MemoryBranchedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryBranched`: a new branch name pointing at an existing version."""

    branch: str
    from_version_id: str


class MemoryBranched(EventBase, frozen=True, tag="MemoryBranched"):
    """A named branch was created at an existing version (no version is created)."""

    data: MemoryBranchedData


class MemoryCommittedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryCommitted`: a new version whose parent is the branch's head
    (schema 2: ``occurred_at``; ``None`` keeps the memory's; only a commit onto ``main`` moves
    the memory's, as only it moves the content)."""

    branch: str
    version_id: str
    parent_version_id: str
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue] = {}
    occurred_at: datetime | None = None


class MemoryCommitted(EventBase, frozen=True, tag="MemoryCommitted"):
    """A version was committed onto a named branch, whose head moved to it."""

    SCHEMA: ClassVar[int] = 2
    data: MemoryCommittedData


class MemoryMergedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryMerged`.

    ``parent_ids`` keep the caller's order (the head of ``branch`` first, i.e. ``ours``); the
    version id is over the sorted parents. ``base_version_id`` is the common ancestor a three-way
    merge used; ``merged_branch`` names the branch merged in, when the caller named one.
    """

    branch: str
    version_id: str
    parent_ids: tuple[str, ...]
    strategy: str
    base_version_id: str | None = None
    merged_branch: str | None = None
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue] = {}


class MemoryMerged(EventBase, frozen=True, tag="MemoryMerged"):
    """Two or more heads were merged into a new version on ``branch``."""

    data: MemoryMergedData


class MemoryRevertedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`MemoryReverted`: a child of the branch head with an older content."""

    branch: str
    version_id: str
    parent_version_id: str
    reverted_to: str
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue] = {}


class MemoryReverted(EventBase, frozen=True, tag="MemoryReverted"):
    """A branch got a new version whose content equals an older version's (history kept)."""

    data: MemoryRevertedData


# --- API keys (libs/events/security.py holds their payloads) ----------------------------


class ApiKeyIssued(EventBase, frozen=True, tag="ApiKeyIssued"):
    """An API key was created (namespace ``system``, aggregate ``apikey``, id = key id)."""

    data: ApiKeyIssuedData


class ApiKeyRevoked(EventBase, frozen=True, tag="ApiKeyRevoked"):
    """An API key stops authenticating anyone; its issuance stays on the chain."""

    data: ApiKeyRevokedData


# --- compression (libs/events/compression.py holds the receipt) ------------------------------


class MemoryCompressed(EventBase, frozen=True, tag="MemoryCompressed"):
    """The compressor compressed one version of the memory; ``data`` holds the compressed text
    and its receipt. Appended to the memory's subject by the compressor, never by a command:
    it moves the memory's sequence (optimistic concurrency sees it) and changes nothing a
    command checks. Its command id is derived from the receipt id and the version event's
    command id (:func:`libs.events.compression.compression_command_id`), so one compression is
    one event however often it is run."""

    data: MemoryCompressedData


# --- the reasoning layer (design section 7; payloads in libs/events/registry.py) ----------
# Registry events live in namespace ``system``: aggregate ``model`` (id
# ``registry.model_aggregate_id(key)``), ``provider`` (id = provider name) and ``ranking`` (id =
# leaderboard source). Consultations live in the caller's namespace, aggregate ``consultation``.


class ModelListed(EventBase, frozen=True, tag="ModelListed"):
    """A provider lists a model the registry did not know (its full record, with sources)."""

    data: ModelListedData


class ModelChanged(EventBase, frozen=True, tag="ModelChanged"):
    """Catalogue fields of a known model changed (a field diff)."""

    data: ModelChangedData


class ModelSuspect(EventBase, frozen=True, tag="ModelSuspect"):
    """A model went missing from its provider's list once, or a probe of it failed."""

    data: ModelSuspectData


class ModelRetired(EventBase, frozen=True, tag="ModelRetired"):
    """A model is no longer routed: missing on N consecutive syncs, or deprecated."""

    data: ModelRetiredData


class ModelRestored(EventBase, frozen=True, tag="ModelRestored"):
    """A suspect or retired model is listed (and healthy) again."""

    data: ModelRestoredData


class ProviderSynced(EventBase, frozen=True, tag="ProviderSynced"):
    """A provider's full list was fetched (one row of the sync log)."""

    data: ProviderSyncedData


class ProviderSyncFailed(EventBase, frozen=True, tag="ProviderSyncFailed"):
    """A provider's sync failed: its models are kept, marked stale."""

    data: ProviderSyncFailedData


class RankingPublished(EventBase, frozen=True, tag="RankingPublished"):
    """A leaderboard category joined to the registry (entries, weights, unmatched names)."""

    data: RankingPublishedData


class ConsultationStarted(EventBase, frozen=True, tag="ConsultationStarted"):
    """A consultation began: prompt, context hash and receipts, the models routed to."""

    data: ConsultationStartedData


class ConsultationAnswerReceived(EventBase, frozen=True, tag="ConsultationAnswerReceived"):
    """One consulted model answered (text, latency, tokens, cost)."""

    data: ConsultationAnswerReceivedData


class ConsultationModelFailed(EventBase, frozen=True, tag="ConsultationModelFailed"):
    """One consulted model's call failed or was cut off (and what took its slot)."""

    data: ConsultationModelFailedData


class ConsensusReached(EventBase, frozen=True, tag="ConsensusReached"):
    """The consultation's answer: the medoid of the largest agreeing cluster, by content."""

    data: ConsensusReachedData


class ConsensusAbstained(EventBase, frozen=True, tag="ConsensusAbstained"):
    """The consultation abstained: agreement below the threshold, or too few answers."""

    data: ConsensusAbstainedData


REGISTRY_EVENTS: Final = (ModelListed, ModelChanged, ModelSuspect, ModelRetired, ModelRestored,
                          ProviderSynced, ProviderSyncFailed, RankingPublished)
"""The registry's event classes (namespace ``system``)."""
CONSULTATION_EVENTS: Final = (ConsultationStarted, ConsultationAnswerReceived,
                              ConsultationModelFailed, ConsensusReached, ConsensusAbstained)
"""A consultation's event classes (the caller's namespace)."""


Event = (
    MemoryCreated
    | MemoryRevised
    | MemoryTagged
    | MemoryMetadataChanged
    | MemoryLinked
    | MemoryForgotten
    | MemoryBranched
    | MemoryCommitted
    | MemoryMerged
    | MemoryReverted
    | AuditCheckpointSigned
    # security
    | ApiKeyIssued
    | ApiKeyRevoked
    # compression
    | MemoryCompressed
    # reasoning layer
    | ModelListed
    | ModelChanged
    | ModelSuspect
    | ModelRetired
    | ModelRestored
    | ProviderSynced
    | ProviderSyncFailed
    | RankingPublished
    | ConsultationStarted
    | ConsultationAnswerReceived
    | ConsultationModelFailed
    | ConsensusReached
    | ConsensusAbstained
)
"""Every event type Mnemos appends to its stream."""


@functools.cache
def event_types() -> Mapping[str, type[EventBase]]:
    """Map of ``type`` tag to event class, for every member of :data:`Event` (built once)."""
    members: tuple[type[EventBase], ...] = Event.__args__
    return MappingProxyType({str(cls.__struct_config__.tag): cls for cls in members})
