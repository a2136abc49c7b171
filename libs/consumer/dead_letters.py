"""Dead letters: messages a consumer gives up on after bounded retries, kept for operators.

Each is published to ``mnemos.dlq.<consumer>.<ns>`` (stream ``MNEMOS_DEADLETTER``) with headers
naming where it came from and why, under a message id derived from the consumer and sequence,
so publishing again after a crash is a no-op. A dead letter that ``mnemos dlq retry`` re-applied
is followed on the same subject by a retry record (no payload, ``Mnemos-Retry-Outcome:
applied``), so the stream stays the operator's history of what was parked and what was repaired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from libs.consumer.deliveries import Delivery
from libs.events import (
    AGGREGATE_MEMORY,
    DEADLETTER_STREAM,
    HDR_MSG_ID,
    Event,
    MnemosError,
    deadletter_subject,
)
from libs.events.tokens import validate_id, validate_namespace

__all__ = [
    "HDR_ATTEMPTS",
    "HDR_CONSUMER",
    "HDR_ERROR",
    "HDR_ORIGINAL_SEQ",
    "HDR_ORIGINAL_SUBJECT",
    "HDR_RETRY_OUTCOME",
    "DeadLetter",
    "dead_letter",
    "memory_of_subject",
    "publish_dead_letters",
    "publish_retry_record",
]

HDR_ORIGINAL_SEQ: Final = "Mnemos-Original-Seq"
HDR_ORIGINAL_SUBJECT: Final = "Mnemos-Original-Subject"
HDR_ERROR: Final = "Mnemos-Error"
HDR_ATTEMPTS: Final = "Mnemos-Attempts"
HDR_CONSUMER: Final = "Mnemos-Consumer"
HDR_RETRY_OUTCOME: Final = "Mnemos-Retry-Outcome"
"""Set on a retry record only: what retrying the dead letter of ``Mnemos-Original-Seq`` did."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message given up on, with why and after how many attempts."""

    seq: int
    subject: str
    ns: str
    event_id: str | None
    error: str
    attempts: int
    raw: bytes


def _namespace_of(event: Event | None, subject: str) -> str:
    """Namespace for the dead-letter subject: the event's, else the subject's token if valid."""
    if event is not None:
        return event.ns
    parts = subject.split(".")
    try:
        return validate_namespace(parts[2] if len(parts) > 2 else "")
    except MnemosError:
        return "_invalid"


def _one_line(text: str, limit: int = 1000) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[:limit]


def dead_letter(delivery: Delivery, event: Event | None, error: BaseException | None,
                attempts: int) -> DeadLetter:
    """The dead letter of ``delivery``: its error on one line, its namespace where known."""
    message = _one_line(f"{type(error).__name__}: {error}" if error else "unknown error")
    return DeadLetter(
        seq=delivery.seq, subject=delivery.subject, ns=_namespace_of(event, delivery.subject),
        event_id=event.id if event else delivery.msg_id, error=message, attempts=attempts,
        raw=delivery.data,
    )


def memory_of_subject(subject: str) -> tuple[str, str] | None:
    """``(ns, memory_id)`` of a memory event subject, or None for any other subject."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[3] != AGGREGATE_MEMORY:
        return None
    try:
        return validate_namespace(parts[2]), validate_id(parts[4])
    except MnemosError:
        return None


async def publish_dead_letters(js: Any, consumer: str, letters: Sequence[DeadLetter],
                               timeout_s: float = 5.0) -> None:
    """Publish ``letters`` to the dead-letter stream (idempotent by message id)."""
    for letter in letters:
        headers = {
            HDR_MSG_ID: f"{consumer}-{letter.seq}",
            HDR_ORIGINAL_SEQ: str(letter.seq),
            HDR_ORIGINAL_SUBJECT: letter.subject,
            HDR_ERROR: letter.error.encode("ascii", "backslashreplace").decode(),
            HDR_ATTEMPTS: str(letter.attempts),
            HDR_CONSUMER: consumer,
        }
        await js.publish(deadletter_subject(consumer, letter.ns), letter.raw, headers=headers,
                         stream=DEADLETTER_STREAM, timeout=timeout_s)


async def publish_retry_record(js: Any, consumer: str, ns: str, seq: int, outcome: str,
                               timeout_s: float = 5.0) -> None:
    """Record on the dead-letter stream that ``consumer``'s dead letter of stream sequence
    ``seq`` was retried with ``outcome`` (idempotent by message id)."""
    headers = {
        HDR_MSG_ID: f"{consumer}-{seq}-retried",
        HDR_ORIGINAL_SEQ: str(seq),
        HDR_CONSUMER: consumer,
        HDR_RETRY_OUTCOME: outcome,
    }
    await js.publish(deadletter_subject(consumer, ns), b"", headers=headers,
                     stream=DEADLETTER_STREAM, timeout=timeout_s)
