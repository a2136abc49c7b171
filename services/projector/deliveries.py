"""What the projector receives from the stream, and what it gives up on."""

from __future__ import annotations

from dataclasses import dataclass

from libs.events import AGGREGATE_MEMORY, Event, MnemosError
from libs.events.tokens import validate_id, validate_namespace

__all__ = ["DeadLetter", "Delivery", "dead_letter", "memory_of_subject"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream message as the projector sees it."""

    seq: int
    subject: str
    data: bytes
    msg_id: str | None = None


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
