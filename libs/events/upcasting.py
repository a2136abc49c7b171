"""Upcasters: small pure functions lifting an old payload version to the next one.

Each is registered for ``(event type, from schema)`` and returns the event dict at
``from schema + 1``. :func:`upcast` applies them in a chain until the target version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libs.events.errors import InvalidInput

__all__ = ["UPCASTERS", "upcast"]

EventDict = dict[str, Any]
Upcaster = Callable[[EventDict], EventDict]


def _memory_created_v1_to_v2(event: EventDict) -> EventDict:
    """Schema 1 called the content ``text`` and had no ``kind``; v1 memories were notes."""
    data = dict(event["data"])
    data["content"] = data.pop("text")
    data.setdefault("kind", "note")
    return {**event, "schema": 2, "data": data}


def _memory_created_v2_to_v3(event: EventDict) -> EventDict:
    """Schema 2 had no ``occurred_at`` nor ``thread``: such a memory happened when it was
    recorded (the event's ``at``) and belongs to no thread."""
    data = dict(event["data"])
    data.setdefault("occurred_at", event["at"])
    return {**event, "schema": 3, "data": data}


def _occurred_unchanged(event: EventDict) -> EventDict:
    """Schema 1 of a new version had no ``occurred_at``: the version keeps the memory's."""
    return {**event, "schema": event["schema"] + 1}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("MemoryCreated", 1): _memory_created_v1_to_v2,
    ("MemoryCreated", 2): _memory_created_v2_to_v3,
    ("MemoryRevised", 1): _occurred_unchanged,
    ("MemoryCommitted", 1): _occurred_unchanged,
}


def upcast(event: EventDict, target: int) -> EventDict:
    """Lift ``event`` (a decoded dict) through the upcaster chain to schema ``target``."""
    current = event
    while current["schema"] < target:
        step = UPCASTERS.get((current["type"], current["schema"]))
        if step is None:
            raise InvalidInput(
                f"no upcaster for {current['type']} schema {current['schema']}",
                type=current["type"],
                schema=current["schema"],
            )
        current = step(current)
    if current["schema"] != target:
        raise InvalidInput(
            f"{current['type']} schema {current['schema']} is newer than this code ({target})",
            type=current["type"],
        )
    return current
