"""What a verification run reports (JSON via ``msgspec.to_builtins``, also over HTTP)."""

from __future__ import annotations

import msgspec

from services.auditor.chain import Break
from services.auditor.readmodel import ReadModelIssue

__all__ = ["CheckpointCheck", "Progress", "VerifyReport"]


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
