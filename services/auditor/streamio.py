"""NATS adapter of the auditor: the signed checkpoints it announces on the stream (reading the
stream is :mod:`libs.consumer.stream`)."""

from __future__ import annotations

from typing import Any, Final

from nats.js import JetStreamContext

from libs.events import (
    HDR_MSG_ID,
    Actor,
    AuditCheckpointSigned,
    AuditCheckpointSignedData,
    derive_event_id,
    encode_event,
    event_subject,
    new_command_id,
)
from services.auditor.checkpoint import Checkpoint, parse_at
from services.auditor.store import CheckpointRecord

__all__ = [
    "AUDIT_AGGREGATE",
    "AUDIT_AGGREGATE_ID",
    "AUDIT_NS",
    "CHECKPOINT_SUBJECT",
    "checkpoint_record",
    "publish_checkpoint",
]

AUDIT_NS: Final = "system"
AUDIT_AGGREGATE: Final = "audit"
AUDIT_AGGREGATE_ID: Final = "chain"
CHECKPOINT_SUBJECT: Final = event_subject(AUDIT_NS, AUDIT_AGGREGATE, AUDIT_AGGREGATE_ID)
"""``mnemos.evt.system.audit.chain``: where signed checkpoints are announced."""

AUDITOR_ACTOR: Final = Actor(principal="mnemos-auditor")



def checkpoint_record(checkpoint: Checkpoint) -> CheckpointRecord:
    """Fix the command and event ids that will announce ``checkpoint``."""
    command_id = new_command_id()
    return CheckpointRecord(checkpoint, derive_event_id(AUDIT_NS, command_id), command_id)


async def publish_checkpoint(js: JetStreamContext, record: CheckpointRecord) -> int:
    """Append the ``AuditCheckpointSigned`` event; return its stream sequence.

    The event is a function of the record alone and its id is the ``Nats-Msg-Id``, so a
    re-publish after a crash is dropped as a duplicate (JetStream answers with the original
    sequence).
    """
    cp = record.checkpoint
    event = AuditCheckpointSigned(
        id=record.event_id, schema=AuditCheckpointSigned.SCHEMA, ns=AUDIT_NS,
        aggregate=AUDIT_AGGREGATE, aggregate_id=AUDIT_AGGREGATE_ID, actor=AUDITOR_ACTOR,
        command_id=record.command_id, correlation_id=record.command_id,
        at=parse_at(cp.at),
        data=AuditCheckpointSignedData(seq=cp.seq, link=cp.link, at=cp.at,
                                       public_key=cp.public_key, signature=cp.signature),
    )
    ack: Any = await js.publish(CHECKPOINT_SUBJECT, encode_event(event),
                                headers={HDR_MSG_ID: record.event_id})
    return int(ack.seq)
