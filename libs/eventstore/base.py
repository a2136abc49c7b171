"""The event-store port: what every adapter promises (see the package docstring)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from libs.events import Event

__all__ = ["Appended", "EventStore", "Fold", "WrongExpectedSequence"]

S = TypeVar("S")


class WrongExpectedSequence(Exception):
    """The aggregate moved past the expected sequence (JetStream error 10071): nothing of the
    append was stored."""

    def __init__(self, subject: str, expected: int) -> None:
        super().__init__(f"{subject}: last sequence is not {expected}")
        self.subject = subject
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Appended:
    """An event in the stream at ``seq``; ``duplicate`` when the store already had it (same id
    inside the duplicate window): ``event`` is then the stored original."""

    event: Event
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Fold(Generic[S]):
    """How an aggregate's state is built: its name (the subject token), the state of an
    aggregate without events, one step per event, and the sequence a state has reached."""

    aggregate: str
    initial: Callable[[str], S]
    evolve: Callable[[S, Event, int], S]
    last_seq: Callable[[S], int]


class EventStore(abc.ABC, Generic[S]):
    """Loads aggregates by folding their events; appends under optimistic concurrency."""

    def __init__(self, fold: Fold[S]) -> None:
        self.fold = fold

    @abc.abstractmethod
    async def load(self, ns: str, aggregate_id: str) -> S:
        """The current state of the aggregate (the initial state when it has no events)."""

    @abc.abstractmethod
    async def append(self, ns: str, aggregate_id: str, events: Sequence[Event],
                     expected_seq: int) -> list[Appended]:
        """Append ``events`` in order if the aggregate's last sequence is ``expected_seq``
        (0: it must have no events); each next event expects the previous one's sequence.

        Raises :class:`WrongExpectedSequence` when the first event's expectation fails (nothing
        is stored); the expectation is checked before the id. A first event whose id the store
        already holds (inside the duplicate window) is not stored again: the original is
        returned flagged ``duplicate`` and the rest of ``events`` is not appended.
        """

    @abc.abstractmethod
    async def event_at(self, seq: int) -> Event:
        """The event stored at stream sequence ``seq``."""

    @abc.abstractmethod
    async def appended_at(self, seq: int) -> datetime:
        """When the store received the message at ``seq`` (its own clock, the one its duplicate
        window runs on), without decoding it: an undecodable event still has a time."""

    @abc.abstractmethod
    async def last_seq(self) -> int:
        """The stream's last sequence (0 when empty)."""

    def storage_refused(self) -> bool:
        """Whether the store recently refused an append for lack of storage (a full disk or
        store limit) and none has succeeded since: readiness reports it."""
        return False
