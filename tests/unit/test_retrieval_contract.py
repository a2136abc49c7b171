"""The retrieval contract (issue 12): occurred_at and threads on events, commands, queries;
the upcasters that keep old events decoding; the domain rules that set them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from libs.events import (
    MAX_THREAD_POSITION,
    Actor,
    Commit,
    InvalidInput,
    MemoryCommitted,
    MemoryCreated,
    MemoryRevised,
    Remember,
    Revise,
    Search,
    ThreadRef,
    convert_params,
    decode_command,
    decode_event,
    encode_event,
    new_command_id,
    utc_instant,
)
from services.command.domain.dag import decide_dag
from services.command.domain.memory import (
    DecisionContext,
    MemoryState,
    creation_memory_id,
    decide,
    evolve,
)

NS = "team-a"
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
THEN = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def _ctx() -> DecisionContext:
    cid = new_command_id()
    return DecisionContext(ns=NS, command_id=cid, correlation_id=cid,
                           actor=Actor(principal="alice"), at=AT, max_content_bytes=1000)


def _created(**kw: object) -> tuple[MemoryState, MemoryCreated]:
    c = _ctx()
    state = MemoryState(memory_id=creation_memory_id(NS, c.command_id))
    [event] = decide(state, Remember(content="Caroline: I went to a support group", **kw), c)  # type: ignore[arg-type]
    assert isinstance(event, MemoryCreated)
    return evolve(state, event, 7), event


def test_remember_records_occurred_at_and_thread_in_schema_3() -> None:
    state, event = _created(occurred_at=THEN.astimezone(timezone(timedelta(hours=2))),
                            thread="session-1", thread_position=3)
    assert event.schema == MemoryCreated.SCHEMA == 3
    assert event.data.occurred_at == THEN and event.data.occurred_at.tzinfo == UTC
    assert event.data.thread == ThreadRef(id="session-1", position=3)
    assert state.occurred_at == THEN
    assert decode_event(encode_event(event)) == event


def test_occurred_at_defaults_to_the_recording_time_and_position_to_none() -> None:
    _, event = _created(thread="chat-9")
    assert event.data.occurred_at == AT
    assert event.data.thread == ThreadRef(id="chat-9", position=None)
    _, lone = _created()
    assert lone.data.thread is None


def test_a_position_without_a_thread_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="thread_position needs a thread"):
        _created(thread_position=1)


def test_schema_2_memory_created_is_upcast_with_its_recording_time() -> None:
    _, event = _created()
    old = msgspec.json.decode(encode_event(event))
    old["schema"] = 2
    del old["data"]["occurred_at"]
    del old["data"]["thread"]
    decoded = decode_event(msgspec.json.encode(old))
    assert isinstance(decoded, MemoryCreated) and decoded.schema == 3
    assert decoded.data.occurred_at == event.at and decoded.data.thread is None


def test_schema_1_revised_and_committed_are_upcast_keeping_occurrence() -> None:
    state, _ = _created(occurred_at=THEN)
    [revised] = decide(state, Revise(memory_id=state.memory_id, content="new words"), _ctx())
    assert isinstance(revised, MemoryRevised) and revised.schema == 2
    assert revised.data.occurred_at is None  # absent: the memory keeps its own
    for event in (revised,):
        old = msgspec.json.decode(encode_event(event))
        old["schema"] = 1
        del old["data"]["occurred_at"]
        decoded = decode_event(msgspec.json.encode(old))
        assert decoded == event
    state = evolve(state, revised, 8)
    [committed] = decide_dag(state, Commit(memory_id=state.memory_id, branch="main",
                                           content="newer words"), _ctx())
    assert isinstance(committed, MemoryCommitted) and committed.schema == 2
    old = msgspec.json.decode(encode_event(committed))
    old["schema"] = 1
    del old["data"]["occurred_at"]
    assert decode_event(msgspec.json.encode(old)) == committed
    assert evolve(state, committed, 9).occurred_at == THEN


def test_a_revision_of_only_occurred_at_is_a_change() -> None:
    state, event = _created()
    same = event.data.content
    with pytest.raises(InvalidInput, match="no change"):
        decide(state, Revise(memory_id=state.memory_id, content=same), _ctx())
    with pytest.raises(InvalidInput, match="no change"):  # the same instant is no change
        decide(state, Revise(memory_id=state.memory_id, content=same, occurred_at=AT), _ctx())
    [moved] = decide(state, Revise(memory_id=state.memory_id, content=same, occurred_at=THEN),
                     _ctx())
    assert isinstance(moved, MemoryRevised) and moved.data.occurred_at == THEN
    assert evolve(state, moved, 8).occurred_at == THEN


def test_commit_moves_occurred_at_only_on_main() -> None:
    state, event = _created()
    [moved] = decide_dag(state, Commit(memory_id=state.memory_id, branch="main",
                                       content=event.data.content, occurred_at=THEN), _ctx())
    assert isinstance(moved, MemoryCommitted) and evolve(state, moved, 8).occurred_at == THEN
    with pytest.raises(InvalidInput):
        decide_dag(state, Commit(memory_id=state.memory_id, branch="draft", content="x",
                                 occurred_at=THEN), _ctx())


@pytest.mark.parametrize("body", [
    b'{"content":"x","occurred_at":"2023-05-08T13:56:00"}',  # no timezone
    b'{"content":"x","occurred_at":"yesterday"}',
    b'{"content":"x","thread":""}',
    b'{"content":"x","thread":"has space"}',
    b'{"content":"x","thread":"' + b"a" * 129 + b'"}',
    b'{"content":"x","thread":"\\u0000"}',
    b'{"content":"x","thread":"\\ud800"}',
    b'{"content":"x","thread":"t","thread_position":-1}',
    b'{"content":"x","thread":"t","thread_position":9007199254740992}',
    b'{"content":"x","thread":"t","thread_position":1.5}',
    b'{"content":"x","thread":"t","thread_position":1e308}',
])
def test_remember_refuses_bad_times_threads_and_positions(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_command("remember", body)


def test_the_largest_position_is_accepted() -> None:
    body = b'{"content":"x","thread":"t","thread_position":%d}' % MAX_THREAD_POSITION
    command = decode_command("remember", body)
    assert isinstance(command, Remember) and command.thread_position == MAX_THREAD_POSITION


@pytest.mark.parametrize("params", [
    {"q": "x", "as_of": "2023-05-08T13:56:00"},
    {"q": "x", "occurred_since": "2023-05-08T13:56:00"},
    {"q": "x", "occurred_until": "2023-05-08"},
    {"q": "x", "occurred_until": "0.5"},
    {"q": "x", "since": "1700000000"},
    {"q": "x", "context": "11"},
    {"q": "x", "context": "-1"},
    {"q": "x", "half_life_days": "0"},
    {"q": "x", "half_life_days": "nan"},
    {"q": "x", "half_life_days": "inf"},
    {"q": "x", "half_life_days": "1e400"},
    {"q": "x", "half_life_days": "36501"},
    {"q": "x", "prefer_recent": "later"},
    {"q": "x", "thread": "a b"},
])
def test_search_refuses_what_its_schema_forbids(params: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        convert_params(params, Search)


def test_search_accepts_the_new_fields() -> None:
    search = convert_params({"q": "x", "context": "2", "prefer_recent": "occurred",
                             "half_life_days": "7.5", "as_of": "2023-05-08T13:56:00+02:00",
                             "thread": "session-1"}, Search)
    assert search.context == 2 and search.prefer_recent == "occurred"
    assert search.as_of is not None and utc_instant(search.as_of).hour == 11


def test_utc_instant_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        utc_instant(datetime(2023, 1, 1))
