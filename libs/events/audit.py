"""The audit chain's wire contract: what status and verification answer, and their requests.

The auditor answers these over the bus (``mnemos.svc.auditor.<query>``); the gateway maps them to
HTTP (``/v1/audit/status``, ``/v1/audit/verify``) and NATS queries in the ``system`` namespace.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

__all__ = [
    "AuditStatus",
    "AuditStatusRequest",
    "AuditVerifyRequest",
    "Break",
    "BreakKind",
    "CheckpointCheck",
    "Progress",
    "ReadModelIssue",
    "VerifyReport",
]


class BreakKind(StrEnum):
    """How the stored chain and the stream disagree."""

    STORED_LINK_EDITED = "stored_link_edited"
    """The stored event hash matches the stream, the stored link does not follow from it."""
    STORED_HASH_EDITED = "stored_event_hash_edited"
    """The stored event hash differs from the stream, yet the stored link is the right one."""
    CHAIN_ROW_EDITED = "chain_row_edited"
    """Stored hash and link both differ, and the stored link does not follow from the hash."""
    EVENT_BYTES_CHANGED = "event_bytes_changed"
    """The stored row is self-consistent but the stream now holds different bytes."""
    CHAIN_ROW_MISSING = "chain_row_missing"
    """The stream holds a sequence the chain lacks, with chain rows after it."""
    CHAIN_TRUNCATED = "chain_truncated"
    """The chain ends before a point it is known to have reached (head, checkpoint, acks)."""
    STREAM_MESSAGE_MISSING = "stream_message_missing"
    """The chain linked a sequence the stream no longer serves (deleted or corrupt on disk)."""
    STREAM_TRUNCATED = "stream_truncated"
    """The stream ends before the chain does."""
    GENESIS_CHANGED = "genesis_changed"
    """The stored genesis row is not the fixed genesis."""
    ANCHOR_CHANGED = "anchor_changed"
    """The stored link at the last verified point differs from the verified value."""
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    """A signed checkpoint's link differs from the link recomputed from the stream."""
    CHECKPOINT_SIGNATURE_INVALID = "checkpoint_signature_invalid"
    """A checkpoint's Ed25519 signature does not verify."""


class Break(msgspec.Struct, frozen=True, kw_only=True):
    """The first point where the chain no longer matches.

    ``expected`` is the trusted value (recomputed, or what was chained), ``found`` the value
    actually present; both hex.
    """

    kind: BreakKind
    seq: int
    detail: str
    expected: str | None = None
    found: str | None = None
    event_id: str | None = None


class ReadModelIssue(msgspec.Struct, frozen=True, kw_only=True):
    """A read-model row that disagrees with the stream event it claims to project."""

    table: str
    seq: int
    event_id: str | None
    field: str
    detail: str


class CheckpointCheck(msgspec.Struct, kw_only=True):
    """A signed checkpoint checked against the recomputed chain."""

    source: str
    seq: int
    link: str
    signature_valid: bool
    trusted_key: bool | None
    matches: bool | None = None
    detail: str = ""


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a long verification is."""

    seq: int
    done: int
    total: int
    elapsed_s: float
    events_per_s: float


class VerifyReport(msgspec.Struct, kw_only=True):
    """The outcome of one verification run (also stored in ``audit_verifications``)."""

    ok: bool = True
    mode: str
    from_seq: int
    to_seq: int = 0
    verified: int = 0
    stream_first_seq: int = 0
    stream_last_seq: int = 0
    chain_head_seq: int = 0
    pending: int = 0
    first_break: Break | None = None
    read_model_checked: int = 0
    memories_checked: int = 0
    """Memories whose rows were compared with the fold of their events."""
    read_model_issue_count: int = 0
    read_model_issues: list[ReadModelIssue] = []
    checkpoints_checked: int = 0
    signing_keys: list[str] = []
    """Distinct Ed25519 keys that signed the checkpoints checked (compare with yours)."""
    trusted_key: str | None = None
    """This machine's auditor key (``<home>/audit/auditor-ed25519.pub``), if there is one."""
    checkpoint_file: CheckpointCheck | None = None
    started_at: str = ""
    duration_s: float = 0.0
    events_per_s: float = 0.0


class AuditStatusRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``audit_status``: the chain head, its lag, checkpoints, the last verification."""


class AuditVerifyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``audit_verify``: recompute the chain from the stream (``full``: from genesis, not from the
    last verified point); ``progress`` streams :class:`Progress` lines before the report."""

    full: bool = False
    progress: bool = False


class AuditStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``audit_status``: where the chain is and what the auditor has noticed."""

    chain: dict[str, Any]
    stream_last_seq: int
    pending: int
    writer_active: bool
    latest_checkpoint: dict[str, Any] | None
    last_verification: dict[str, Any] | None
    incidents: list[dict[str, Any]]
    public_key: str | None
    checkpoint_dir: str
