"""An in-memory event store with the JetStream adapter's semantics, for fast handler tests.

One global sequence, one last sequence per subject, message-id deduplication inside a duplicate
window (a monotonic clock, injectable), the same exceptions. Not thread-safe; one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from libs.events import Event, NotFound, decode_event, encode_event, event_subject
from libs.eventstore.base import Appended, EventStore, Fold, WrongExpectedSequence

__all__ = ["InMemoryEventStore"]

S = TypeVar("S")


class InMemoryEventStore(EventStore[S]):
    """Events kept as their encoded bytes (so decoding is exercised as with the real stream)."""

    def __init__(self, fold: Fold[S], duplicate_window_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(fold)
        self._messages: list[tuple[str, bytes]] = []
        self._times: list[datetime] = []
        self._last_by_subject: dict[str, int] = {}
        self._seqs_by_subject: dict[str, list[int]] = {}
        self._ids: dict[str, tuple[int, float]] = {}
        self._window_s = duplicate_window_s
        self._clock = clock

    def _subject(self, ns: str, aggregate_id: str) -> str:
        return event_subject(ns, self.fold.aggregate, aggregate_id)

    async def event_at(self, seq: int) -> Event:
        if not 1 <= seq <= len(self._messages):
            raise NotFound(f"no message at seq {seq}", seq=seq)
        return decode_event(self._messages[seq - 1][1])

    async def appended_at(self, seq: int) -> datetime:
        if not 1 <= seq <= len(self._times):
            raise NotFound(f"no message at seq {seq}", seq=seq)
        return self._times[seq - 1]

    async def last_seq(self) -> int:
        return len(self._messages)

    async def load(self, ns: str, aggregate_id: str) -> S:
        state = self.fold.initial(aggregate_id)
        for seq in self._seqs_by_subject.get(self._subject(ns, aggregate_id), []):
            state = self.fold.evolve(state, decode_event(self._messages[seq - 1][1]), seq)
        return state

    async def append(self, ns: str, aggregate_id: str, events: Sequence[Event],
                     expected_seq: int) -> list[Appended]:
        subject = self._subject(ns, aggregate_id)
        appended: list[Appended] = []
        expected = expected_seq
        for event in events:
            # JetStream checks the expectation first, then the message id.
            if self._last_by_subject.get(subject, 0) != expected:
                raise WrongExpectedSequence(subject, expected)
            now = self._clock()
            seen = self._ids.get(event.id)
            if seen is not None and now - seen[1] < self._window_s:
                return [*appended, Appended(await self.event_at(seen[0]), seen[0], True)]
            self._messages.append((subject, encode_event(event)))
            self._times.append(datetime.now(UTC))
            seq = len(self._messages)
            self._last_by_subject[subject] = seq
            self._seqs_by_subject.setdefault(subject, []).append(seq)
            self._ids[event.id] = (seq, now)
            appended.append(Appended(event, seq, False))
            expected = seq
        return appended
