"""The history rules without servers: branch, commit, merge (with conflicts), revert, fold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.dag import DEFAULT_BRANCH
from libs.events import (
    Actor,
    Branch,
    CommandBase,
    Commit,
    Conflict,
    Event,
    InvalidInput,
    MemoryMerged,
    Merge,
    NotFound,
    Remember,
    Revert,
    Revise,
    decode_event,
    encode_event,
    new_command_id,
)
from services.command.domain.dag import decide_dag
from services.command.domain.memory import DecisionContext, MemoryState, decide, evolve, fold

NS = "team-a"
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _ctx() -> DecisionContext:
    cid = new_command_id()
    return DecisionContext(ns=NS, command_id=cid, correlation_id=cid,
                           actor=Actor(principal="alice"), at=AT, max_content_bytes=10_000)


class _Memory:
    """A memory whose events are kept, so tests can fold them again from scratch."""

    def __init__(self, content: str) -> None:
        self.events: list[tuple[Event, int]] = []
        self.state = MemoryState(memory_id="m1")
        self.apply(Remember(content=content))

    def apply(self, command: CommandBase) -> Event:
        if isinstance(command, Branch | Commit | Merge | Revert):
            events = decide_dag(self.state, command, _ctx())
        else:
            events = decide(self.state, command, _ctx())
        for event in events:
            # Through the codec, as the stream stores it.
            stored = decode_event(encode_event(event))
            seq = len(self.events) + 1
            self.state = evolve(self.state, stored, seq)
            self.events.append((stored, seq))
        return events[-1]

    def head(self, branch: str = DEFAULT_BRANCH) -> str:
        assert self.state.dag is not None
        return self.state.dag.branches.head(branch)

    def content(self, version: str) -> str:
        assert self.state.dag is not None
        return self.state.dag.content_of(version)


def test_every_memory_starts_with_main_at_its_root() -> None:
    memory = _Memory("a\n")
    assert memory.state.dag is not None
    assert dict(memory.state.dag.branches) == {"main": memory.state.head_version_id}


def test_diamond_merge_three_way_and_refold_gives_same_state() -> None:
    memory = _Memory("one\ntwo\nthree\n")
    root = memory.head()
    memory.apply(Branch(memory_id="m1", branch="dev"))
    memory.apply(Commit(memory_id="m1", branch="dev", content="ONE\ntwo\nthree\n"))
    memory.apply(Revise(memory_id="m1", content="one\ntwo\nTHREE\n"))
    merged = memory.apply(Merge(memory_id="m1", into="main", from_branch="dev"))
    assert isinstance(merged, MemoryMerged)
    assert merged.data.content == "ONE\ntwo\nTHREE\n"
    assert merged.data.base_version_id == root
    assert merged.data.parent_ids[1] == memory.head("dev")
    assert memory.state.head_version_id == merged.data.version_id == memory.head()
    again = fold("m1", memory.events)
    assert again.dag is not None and memory.state.dag is not None
    assert dict(again.dag.branches) == dict(memory.state.dag.branches)
    assert [n.version_id for n in again.dag.graph] == [n.version_id for n in memory.state.dag.graph]


def test_conflicting_three_way_merge_raises_with_hunks_and_changes_nothing() -> None:
    memory = _Memory("x\n")
    memory.apply(Branch(memory_id="m1", branch="dev"))
    memory.apply(Commit(memory_id="m1", branch="dev", content="dev\n"))
    memory.apply(Revise(memory_id="m1", content="main\n"))
    before = memory.state
    with pytest.raises(Conflict) as caught:
        memory.apply(Merge(memory_id="m1", into="main", from_branch="dev"))
    hunks = caught.value.detail["conflicts"]
    assert hunks[0]["ours_text"] == "main\n" and hunks[0]["theirs_text"] == "dev\n"
    assert memory.state is before
    ours = memory.apply(Merge(memory_id="m1", into="main", from_branch="dev", strategy="theirs"))
    assert memory.content(ours.data.version_id) == "dev\n"  # type: ignore[union-attr]


def test_revert_of_a_revert_restores_and_keeps_history() -> None:
    memory = _Memory("v1\n")
    v1 = memory.head()
    memory.apply(Revise(memory_id="m1", content="v2\n"))
    v2 = memory.head()
    memory.apply(Revert(memory_id="m1", to_version=v1))
    v3 = memory.head()
    assert memory.content(v3) == "v1\n" and v3 != v1
    memory.apply(Revert(memory_id="m1", to_version=v2))
    v4 = memory.head()
    assert memory.content(v4) == "v2\n" and v4 != v2
    assert memory.state.dag is not None
    assert memory.state.dag.graph.node(v4).parent_ids == (v3,)
    with pytest.raises(InvalidInput):
        memory.apply(Revert(memory_id="m1", to_version=v2))  # same content as the head


def test_expected_head_and_unknown_branch() -> None:
    memory = _Memory("a\n")
    root = memory.head()
    memory.apply(Commit(memory_id="m1", branch="main", content="b\n", expected_head=root))
    with pytest.raises(Conflict):
        memory.apply(Commit(memory_id="m1", branch="main", content="c\n", expected_head=root))
    with pytest.raises(NotFound):
        memory.apply(Commit(memory_id="m1", branch="nope", content="c\n"))
    memory.apply(Branch(memory_id="m1", branch="dev", from_version=root))
    with pytest.raises(Conflict):
        memory.apply(Branch(memory_id="m1", branch="dev"))
    assert memory.head("dev") == root
