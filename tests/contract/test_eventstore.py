"""One conformance suite for every event-store adapter (in the spirit of pyeventsourcing's
recorder test cases): the in-memory fake and the JetStream adapter against a real nats-server
must behave the same."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from libs.events import (
    Actor,
    Event,
    MemoryTagged,
    MemoryTaggedData,
    derive_event_id,
    new_command_id,
)
from libs.eventstore import (
    EventStore,
    Fold,
    InMemoryEventStore,
    JetStreamEventStore,
    WrongExpectedSequence,
)

NS = "contract"


@dataclass(frozen=True)
class Tally:
    """A toy aggregate: how many events, which tags were added, the last sequence."""

    aggregate_id: str
    count: int = 0
    tags: tuple[str, ...] = ()
    last_seq: int = 0


def _evolve(state: Tally, event: Event, seq: int) -> Tally:
    added = event.data.added if isinstance(event, MemoryTagged) else ()
    return replace(state, count=state.count + 1, tags=(*state.tags, *added), last_seq=seq)


FOLD = Fold(aggregate="memory", initial=Tally, evolve=_evolve,
            last_seq=lambda state: state.last_seq)


def tagged(aggregate_id: str, tag: str, command_id: str | None = None, index: int = 0
           ) -> MemoryTagged:
    command_id = command_id or new_command_id()
    return MemoryTagged(
        id=derive_event_id(NS, command_id, index), schema=1, ns=NS, aggregate="memory",
        aggregate_id=aggregate_id, actor=Actor(principal="contract"), command_id=command_id,
        correlation_id=command_id, at=datetime.now(UTC),
        data=MemoryTaggedData(added=(tag,)),
    )


class EventStoreContract:
    """Subclasses provide the ``store`` fixture."""

    async def test_load_of_an_unknown_aggregate_is_its_initial_state(self, store: EventStore[Any]
                                                                     ) -> None:
        assert await store.load(NS, "nobody") == Tally("nobody")
        assert await store.last_seq() == 0

    async def test_load_after_append_folds_every_event_in_order(self, store: EventStore[Any]
                                                                ) -> None:
        first = await store.append(NS, "a", [tagged("a", "x")], 0)
        second = await store.append(NS, "a", [tagged("a", "y")], first[-1].seq)
        await store.append(NS, "b", [tagged("b", "z")], 0)
        state = await store.load(NS, "a")
        assert (state.count, state.tags, state.last_seq) == (2, ("x", "y"), second[-1].seq)
        assert (await store.event_at(second[-1].seq)).id == second[-1].event.id
        assert await store.last_seq() == 3

    async def test_each_message_has_the_stores_time(self, store: EventStore[Any]) -> None:
        before = datetime.now(UTC)
        appended = await store.append(NS, "t", [tagged("t", "x")], 0)
        at = await store.appended_at(appended[-1].seq)
        assert at.tzinfo is not None
        assert abs((at - before).total_seconds()) < 60  # the store's clock, not the event's

    async def test_expected_sequence_conflict_appends_nothing(self, store: EventStore[Any]
                                                              ) -> None:
        created = await store.append(NS, "a", [tagged("a", "x")], 0)
        with pytest.raises(WrongExpectedSequence):
            await store.append(NS, "a", [tagged("a", "late")], 0)  # "must not exist"
        with pytest.raises(WrongExpectedSequence):
            await store.append(NS, "a", [tagged("a", "late")], created[-1].seq + 5)
        assert (await store.load(NS, "a")).count == 1
        assert await store.last_seq() == 1

    async def test_a_duplicate_event_id_is_stored_once(self, store: EventStore[Any]) -> None:
        event = tagged("a", "x")
        first = await store.append(NS, "a", [event], 0)
        again = await store.append(NS, "a", [event], first[-1].seq)
        assert len(again) == 1 and again[0].duplicate
        assert again[0].seq == first[-1].seq and again[0].event.id == event.id
        with pytest.raises(WrongExpectedSequence):  # the expectation is checked first
            await store.append(NS, "a", [event], 0)
        assert await store.last_seq() == 1

    async def test_a_multi_event_append_chains_and_fails_as_a_whole_up_front(
            self, store: EventStore[Any]) -> None:
        command_id = new_command_id()
        events = [tagged("a", f"t{i}", command_id, i) for i in range(3)]
        appended = await store.append(NS, "a", events, 0)
        assert [item.seq for item in appended] == [1, 2, 3]
        with pytest.raises(WrongExpectedSequence):
            await store.append(NS, "a", [tagged("a", "u"), tagged("a", "v")], 1)
        assert (await store.load(NS, "a")).tags == ("t0", "t1", "t2")

    async def test_concurrent_writers_on_one_aggregate_lose_no_update(
            self, store: EventStore[Any]) -> None:
        writers, each = 8, 5

        async def writer(name: str) -> int:
            retries = 0
            for i in range(each):
                while True:
                    state = await store.load(NS, "shared")
                    try:
                        await store.append(NS, "shared", [tagged("shared", f"{name}-{i}")],
                                           state.last_seq)
                        break
                    except WrongExpectedSequence:
                        retries += 1
                        await asyncio.sleep(random.uniform(0, 0.002))
            return retries

        await asyncio.gather(*(writer(f"w{n}") for n in range(writers)))
        state = await store.load(NS, "shared")
        assert state.count == writers * each
        assert sorted(state.tags) == sorted(f"w{n}-{i}" for n in range(writers)
                                            for i in range(each))


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore[Any]:
        return InMemoryEventStore(FOLD)

    async def test_the_duplicate_window_ends(self) -> None:
        now = [0.0]
        store = InMemoryEventStore(FOLD, duplicate_window_s=10.0, clock=lambda: now[0])
        event = tagged("a", "x")
        first = await store.append(NS, "a", [event], 0)
        now[0] = 11.0
        later = await store.append(NS, "a", [event], first[-1].seq)
        assert not later[0].duplicate and later[0].seq == 2


@pytest.mark.integration
class TestJetStreamEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, nats_js: Any) -> AsyncIterator[EventStore[Any]]:
        yield JetStreamEventStore(nats_js, FOLD)

    async def test_a_cold_cache_reads_the_same_state(self, nats_js: Any) -> None:
        warm = JetStreamEventStore(nats_js, FOLD)
        seq = 0
        for tag in ("x", "y", "z"):
            seq = (await warm.append(NS, "a", [tagged("a", tag)], seq))[-1].seq
        assert await JetStreamEventStore(nats_js, FOLD).load(NS, "a") == await warm.load(NS, "a")
