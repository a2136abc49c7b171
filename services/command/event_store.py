"""The JetStream adapter of the memory aggregate: load state by folding a memory's subject,
append events under optimistic concurrency.

Every memory has its own subject ``mnemos.evt.<ns>.memory.<id>``, so "the memory's version" is
the stream's *last sequence on that subject*, which JetStream itself checks on append
(``Nats-Expected-Last-Subject-Sequence``). Loading asks for the subject's last message (one
direct-get; 404 = the memory does not exist) and folds only what the in-process cache has not
seen yet, so several gateway instances can share the stream without coordination.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import nats.errors
from nats.js.errors import APIError, NotFoundError

from libs.events import (
    AGGREGATE_MEMORY,
    EVENTS_STREAM,
    HDR_EXPECTED_LAST_SUBJECT_SEQ,
    HDR_MSG_ID,
    JS_ERR_WRONG_LAST_SEQUENCE,
    Event,
    InvalidInput,
    MnemosError,
    Unavailable,
    decode_event,
    encode_event,
    event_subject,
)
from libs.runtime.logging import get_logger
from services.command.domain import MemoryState, evolve

__all__ = ["Appended", "EventStore", "WrongExpectedSequence"]

log = get_logger(__name__)

DEFAULT_CACHE_SIZE: Final = 10_000
"""Memory states kept in process; a miss costs one fold of the memory's subject."""


class WrongExpectedSequence(Exception):
    """JetStream refused an append: the subject moved past the expected sequence (10071)."""

    def __init__(self, subject: str, expected: int) -> None:
        super().__init__(f"{subject}: last sequence is not {expected}")
        self.subject = subject
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Appended:
    """An event in the stream at ``seq``; ``duplicate`` when JetStream already had it."""

    event: Event
    seq: int
    duplicate: bool


@contextlib.asynccontextmanager
async def _broker_call(what: str) -> AsyncIterator[None]:
    """Turn transport failures into :class:`Unavailable` (safe to retry with the same id)."""
    try:
        yield
    except (TimeoutError, nats.errors.NoRespondersError,  # nats-py raises both TimeoutErrors
            nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
        raise Unavailable(f"JetStream did not answer ({what})", error=type(exc).__name__) from exc


class EventStore:
    """Loads and appends memory events in ``MNEMOS_EVENTS``, caching folded states (LRU)."""

    def __init__(self, js: Any, cache_size: int = DEFAULT_CACHE_SIZE,
                 timeout_s: float = 5.0) -> None:
        self._js = js
        self._cache: OrderedDict[tuple[str, str], MemoryState] = OrderedDict()
        self._cache_size = cache_size
        self._timeout_s = timeout_s

    # --- cache ----------------------------------------------------------------------------

    def _remember(self, ns: str, state: MemoryState) -> None:
        key = (ns, state.memory_id)
        current = self._cache.get(key)
        if current is not None and current.last_seq > state.last_seq:
            return  # a concurrent task already cached something newer
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def invalidate(self, ns: str, memory_id: str) -> None:
        """Forget the cached state of one memory (after a failed append)."""
        self._cache.pop((ns, memory_id), None)

    # --- reads ----------------------------------------------------------------------------

    async def _get(self, **kwargs: Any) -> Any:
        async with _broker_call("get message"):
            return await self._js.get_msg(EVENTS_STREAM, direct=True, **kwargs)

    @staticmethod
    def _decode(raw: Any) -> Event:
        try:
            return decode_event(bytes(raw.data))
        except InvalidInput as exc:
            # A stored event this code cannot read is a server-side fault, not the caller's.
            raise MnemosError(
                f"stored event at seq {raw.seq} cannot be decoded: {exc.message}", seq=raw.seq
            ) from exc

    async def last_seq(self) -> int:
        """The stream's last sequence now (0 when empty)."""
        async with _broker_call("stream info"):
            info = await self._js.stream_info(EVENTS_STREAM)
        return int(info.state.last_seq or 0)

    async def event_at(self, seq: int) -> Event:
        """The event stored at stream sequence ``seq``."""
        return self._decode(await self._get(seq=seq))

    async def load(self, ns: str, memory_id: str) -> MemoryState:
        """The current state of ``memory_id`` in ``ns`` (an empty state if it has no events)."""
        subject = event_subject(ns, AGGREGATE_MEMORY, memory_id)
        try:
            last = await self._get(subject=subject)
        except NotFoundError:
            return MemoryState(memory_id=memory_id)
        cached = self._cache.get((ns, memory_id))
        if cached is not None and cached.last_seq == last.seq:
            self._cache.move_to_end((ns, memory_id))
            return cached
        state = cached if cached is not None and cached.last_seq < last.seq else None
        state = state or MemoryState(memory_id=memory_id)
        while state.last_seq < last.seq:
            if state.last_seq + 1 == last.seq:
                raw = last  # the newest message is already in hand
            else:
                raw = await self._get(seq=state.last_seq + 1, subject=subject, next=True)
            state = evolve(state, self._decode(raw), int(raw.seq))
        self._remember(ns, state)
        return state

    # --- appends --------------------------------------------------------------------------

    async def append(
        self, ns: str, memory_id: str, events: list[Event], expected_seq: int
    ) -> list[Appended]:
        """Append ``events`` to the memory's subject if its last sequence is ``expected_seq``.

        Raises :class:`WrongExpectedSequence` if the memory moved. If JetStream reports the
        first event as a duplicate (same ``Nats-Msg-Id`` inside the duplicate window), the
        command was applied before: the stored original is returned, flagged ``duplicate``.
        """
        subject = event_subject(ns, AGGREGATE_MEMORY, memory_id)
        before = self._cache.get((ns, memory_id))
        appended: list[Appended] = []
        expected = expected_seq
        for event in events:
            headers = {HDR_MSG_ID: event.id, HDR_EXPECTED_LAST_SUBJECT_SEQ: str(expected)}
            try:
                async with _broker_call("publish"):
                    ack = await self._js.publish(
                        subject, encode_event(event), headers=headers, timeout=self._timeout_s
                    )
            except APIError as exc:
                self.invalidate(ns, memory_id)
                if exc.err_code == JS_ERR_WRONG_LAST_SEQUENCE:
                    raise WrongExpectedSequence(subject, expected) from None
                raise Unavailable(f"JetStream refused the append: {exc.description}",
                                  err_code=exc.err_code) from exc
            if ack.duplicate:
                self.invalidate(ns, memory_id)
                original = await self.event_at(int(ack.seq))
                log.info("append_duplicate", event_id=event.id, seq=ack.seq)
                return [*appended, Appended(original, int(ack.seq), True)]
            appended.append(Appended(event, int(ack.seq), False))
            expected = int(ack.seq)
        if before is None and expected_seq == 0:
            before = MemoryState(memory_id=memory_id)
        if before is not None and before.last_seq == expected_seq:
            state = before
            for item in appended:
                state = evolve(state, item.event, item.seq)
            self._remember(ns, state)
        return appended
