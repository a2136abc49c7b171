"""The JetStream adapter: one subject per aggregate, ``mnemos.evt.<ns>.<aggregate>.<id>``.

"The aggregate's version" is the stream's *last sequence on that subject*, which JetStream
itself checks on append (``Nats-Expected-Last-Subject-Sequence``). Loading asks for the
subject's last message (one direct-get; 404 = no events) and folds only what the in-process
cache has not seen yet, so several processes can share the stream without coordination.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import nats.errors
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from libs.events import (
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
from libs.eventstore.base import Appended, EventStore, Fold, WrongExpectedSequence
from libs.runtime.logging import get_logger

__all__ = ["DEFAULT_CACHE_SIZE", "JetStreamEventStore", "broker_call", "broker_failure"]

log = get_logger(__name__)

S = TypeVar("S")

JS_ERR_INSUFFICIENT_RESOURCES: Final = 10023
"""JetStream's answer to a write it has no storage for (disk full, ``max_file_store`` reached)."""
STORAGE_RECHECK_S: Final = 10.0
"""How long a storage refusal keeps readiness down without a successful append; after it
traffic may come back and test the storage again."""

DEFAULT_CACHE_SIZE: Final = 10_000
"""Aggregate states kept in process; a miss costs one fold of the aggregate's subject."""


_TRANSPORT_FAILURES: Final = (
    TimeoutError,  # nats-py raises both TimeoutErrors (asyncio's and its own subclass)
    nats.errors.NoRespondersError,  # no server answered: e.g. a stream without a leader
    nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
)


def broker_failure(exc: BaseException, what: str) -> Unavailable | None:
    """The :class:`Unavailable` a failure of the broker means (None for others): a transport
    failure, or JetStream's own 503 (not ready, no leader elected yet) that no caller turned
    into something more precise (an append turns "no storage left" into its own answer, so
    :func:`broker_call` leaves JetStream's answers to its caller)."""
    if isinstance(exc, (*_TRANSPORT_FAILURES, ServiceUnavailableError)):
        return Unavailable(f"the event stream (JetStream) did not answer ({what})",
                           error=type(exc).__name__)
    return None


@contextlib.asynccontextmanager
async def broker_call(what: str) -> AsyncIterator[None]:
    """Turn transport failures into :class:`Unavailable` (safe to retry with the same id)."""
    try:
        yield
    except _TRANSPORT_FAILURES as exc:
        failure = broker_failure(exc, what)
        assert failure is not None
        raise failure from exc


class JetStreamEventStore(EventStore[S]):
    """Loads and appends aggregates in ``MNEMOS_EVENTS``, caching folded states (LRU)."""

    def __init__(self, js: Any, fold: Fold[S], cache_size: int = DEFAULT_CACHE_SIZE,
                 timeout_s: float = 5.0) -> None:
        super().__init__(fold)
        self._js = js
        self._cache: OrderedDict[tuple[str, str], S] = OrderedDict()
        self._cache_size = cache_size
        self._timeout_s = timeout_s
        self._storage_refused_at: float | None = None

    def storage_refused(self) -> bool:
        """True for :data:`STORAGE_RECHECK_S` after JetStream refused an append for lack of
        storage, unless an append succeeded since."""
        refused = self._storage_refused_at
        return refused is not None and time.monotonic() - refused < STORAGE_RECHECK_S

    def _subject(self, ns: str, aggregate_id: str) -> str:
        return event_subject(ns, self.fold.aggregate, aggregate_id)

    def _remember(self, ns: str, aggregate_id: str, state: S) -> None:
        key = (ns, aggregate_id)
        current = self._cache.get(key)
        if current is not None and self.fold.last_seq(current) > self.fold.last_seq(state):
            return  # a concurrent task already cached something newer
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def invalidate(self, ns: str, aggregate_id: str) -> None:
        """Forget the cached state of one aggregate (after a failed append)."""
        self._cache.pop((ns, aggregate_id), None)

    async def _get(self, **kwargs: Any) -> Any:
        async with broker_call("get message"):
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

    async def event_at(self, seq: int) -> Event:
        return self._decode(await self._get(seq=seq))

    async def appended_at(self, seq: int) -> datetime:
        raw = await self._get(seq=seq)
        if raw.time is None:
            raise MnemosError(f"the stream gave no time for seq {seq}", seq=seq)
        return raw.time  # type: ignore[no-any-return]

    async def last_seq(self) -> int:
        async with broker_call("stream info"):
            info = await self._js.stream_info(EVENTS_STREAM)
        return int(info.state.last_seq or 0)

    async def load(self, ns: str, aggregate_id: str) -> S:
        subject = self._subject(ns, aggregate_id)
        fold = self.fold
        try:
            last = await self._get(subject=subject)
        except NotFoundError:
            return fold.initial(aggregate_id)
        cached = self._cache.get((ns, aggregate_id))
        if cached is not None and fold.last_seq(cached) == last.seq:
            self._cache.move_to_end((ns, aggregate_id))
            return cached
        state = (cached if cached is not None and fold.last_seq(cached) < last.seq
                 else fold.initial(aggregate_id))
        while fold.last_seq(state) < last.seq:
            if fold.last_seq(state) + 1 == last.seq:
                raw = last  # the newest message is already in hand
            else:
                raw = await self._get(seq=fold.last_seq(state) + 1, subject=subject, next=True)
            state = fold.evolve(state, self._decode(raw), int(raw.seq))
        self._remember(ns, aggregate_id, state)
        return state

    async def append(self, ns: str, aggregate_id: str, events: Sequence[Event],
                     expected_seq: int) -> list[Appended]:
        subject = self._subject(ns, aggregate_id)
        before = self._cache.get((ns, aggregate_id))
        appended: list[Appended] = []
        expected = expected_seq
        for event in events:
            headers = {HDR_MSG_ID: event.id, HDR_EXPECTED_LAST_SUBJECT_SEQ: str(expected)}
            try:
                async with broker_call("publish"):
                    ack = await self._js.publish(
                        subject, encode_event(event), headers=headers, timeout=self._timeout_s
                    )
            except APIError as exc:
                self.invalidate(ns, aggregate_id)
                if exc.err_code == JS_ERR_WRONG_LAST_SEQUENCE:
                    raise WrongExpectedSequence(subject, expected) from None
                if exc.err_code == JS_ERR_INSUFFICIENT_RESOURCES:
                    self._storage_refused_at = time.monotonic()
                    log.error("stream_storage_full", subject=subject, error=exc.description)
                    raise Unavailable("the event stream has no storage left (JetStream: "
                                      f"{exc.description}); free disk space or raise the store "
                                      "limit", err_code=exc.err_code) from exc
                raise Unavailable(f"JetStream refused the append: {exc.description}",
                                  err_code=exc.err_code) from exc
            if ack.duplicate:
                self.invalidate(ns, aggregate_id)
                original = await self.event_at(int(ack.seq))
                log.info("append_duplicate", event_id=event.id, seq=ack.seq)
                return [*appended, Appended(original, int(ack.seq), True)]
            self._storage_refused_at = None
            appended.append(Appended(event, int(ack.seq), False))
            expected = int(ack.seq)
        if before is None and expected_seq == 0:
            before = self.fold.initial(aggregate_id)
        if before is not None and self.fold.last_seq(before) == expected_seq:
            state = before
            for item in appended:
                state = self.fold.evolve(state, item.event, item.seq)
            self._remember(ns, aggregate_id, state)
        return appended
