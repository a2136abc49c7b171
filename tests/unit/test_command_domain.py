"""The memory aggregate's rules without servers: decide validates and builds, evolve folds."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from libs.events import (
    Actor,
    Conflict,
    Forget,
    InvalidInput,
    Link,
    MemoryCreated,
    MemoryForgotten,
    MemoryLinked,
    MemoryMetadataChanged,
    MemoryRevised,
    MemoryTagged,
    MetadataValue,
    NotFound,
    PayloadTooLarge,
    Remember,
    Revise,
    SetMetadata,
    Tag,
    content_hash,
    decode_event,
    derive_event_id,
    encode_event,
    new_command_id,
    version_id,
)
from services.command.domain.memory import (
    MAX_TAGS,
    DecisionContext,
    MemoryState,
    creation_memory_id,
    decide,
    evolve,
    fold,
    result_for,
)

NS = "team-a"
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def ctx(command_id: str | None = None, limit: int = 1000, correlation: str | None = None
        ) -> DecisionContext:
    cid = command_id or new_command_id()
    return DecisionContext(
        ns=NS, command_id=cid, correlation_id=correlation or cid,
        actor=Actor(principal="alice", agent_id="planner", model="m1", provider="p"),
        at=AT, max_content_bytes=limit,
    )


def created(content: str = "The user prefers dark mode", **kw) -> tuple[MemoryState, str]:
    c = ctx()
    memory_id = creation_memory_id(NS, c.command_id)
    [event] = decide(MemoryState(memory_id=memory_id), Remember(content=content, **kw), c)
    return evolve(MemoryState(memory_id=memory_id), event, 1), memory_id


def apply(state: MemoryState, command, seq: int, target: MemoryState | None = None) -> MemoryState:
    [event] = decide(state, command, ctx(), target)
    return evolve(state, event, seq)


# --- remember -------------------------------------------------------------------------------


def test_remember_builds_a_full_envelope_and_root_version() -> None:
    c = ctx(correlation="conv-1")
    memory_id = creation_memory_id(NS, c.command_id)
    command = Remember(content="Paris is the capital", tags=("geo", "a", "geo"),
                       metadata={"lang": "en"}, source="wiki", kind="fact")
    [event] = decide(MemoryState(memory_id=memory_id), command, c)
    assert isinstance(event, MemoryCreated)
    assert event.id == derive_event_id(NS, c.command_id, 0) == memory_id
    assert (event.schema, event.ns, event.aggregate) == (MemoryCreated.SCHEMA, NS, "memory")
    assert (event.aggregate_id, event.command_id, event.correlation_id) == (
        memory_id, c.command_id, "conv-1")
    assert event.actor.principal == "alice" and event.actor.agent_id == "planner"
    assert event.at == AT
    data = event.data
    assert data.tags == ("a", "geo")  # deduplicated, sorted
    assert data.content_hash == content_hash("Paris is the capital")
    assert data.version_id == version_id(memory_id, data.content_hash, {"lang": "en"}, ())
    assert data.provenance.source == "wiki" and data.kind == "fact"
    assert decode_event(encode_event(event)) == event


def test_creation_id_is_deterministic_per_command() -> None:
    cid = new_command_id()
    assert creation_memory_id(NS, cid) == creation_memory_id(NS, cid)
    assert creation_memory_id(NS, cid) != creation_memory_id("other", cid)


@pytest.mark.parametrize("content", ["", "   ", "\n\t"])
def test_remember_rejects_empty_content(content: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decide(MemoryState(memory_id="m1"), Remember(content=content), ctx())
    assert info.value.code == "invalid_input" and info.value.detail["field"] == "content"


def test_content_limit_counts_utf8_bytes() -> None:
    fits = "é" * 500  # 1000 bytes
    decide(MemoryState(memory_id="m1"), Remember(content=fits), ctx(limit=1000))
    with pytest.raises(PayloadTooLarge) as info:
        decide(MemoryState(memory_id="m1"), Remember(content=fits + "x"), ctx(limit=1000))
    assert info.value.http_status == 413


def test_remember_on_existing_memory_conflicts() -> None:
    state, _ = created()
    with pytest.raises(Conflict):
        decide(state, Remember(content="again"), ctx())


def test_too_many_tags_and_bad_metadata_keys_are_refused() -> None:
    tags = tuple(f"t{i}" for i in range(MAX_TAGS + 1))
    with pytest.raises(InvalidInput):
        decide(MemoryState(memory_id="m1"), Remember(content="x", tags=tags), ctx())
    with pytest.raises(InvalidInput):
        decide(MemoryState(memory_id="m1"), Remember(content="x", metadata={"": 1}), ctx())
    with pytest.raises(PayloadTooLarge):
        big: dict[str, MetadataValue] = {"k": "v" * 20_000}
        decide(MemoryState(memory_id="m1"), Remember(content="x", metadata=big), ctx())


def test_command_struct_rejects_bad_tags_and_unknown_fields() -> None:
    from libs.events import decode_command

    with pytest.raises(InvalidInput):
        decode_command("remember", b'{"content": "x", "tags": ["has space"]}')
    with pytest.raises(InvalidInput):
        decode_command("remember", b'{"content": "x", "colour": "red"}')


# --- revise ---------------------------------------------------------------------------------


def test_revise_chains_versions_and_carries_metadata_forward() -> None:
    state, memory_id = created(metadata={"lang": "en"})
    root = state.head_version_id
    [event] = decide(state, Revise(memory_id=memory_id, content="new text", reason="fix"), ctx())
    assert isinstance(event, MemoryRevised)
    assert event.data.parent_version_id == root
    assert event.data.metadata == {"lang": "en"}
    assert event.data.version_id == version_id(
        memory_id, content_hash("new text"), {"lang": "en"}, (root,))
    after = evolve(state, event, 7)
    assert after.head_version_id == event.data.version_id and after.last_seq == 7


def test_revise_with_identical_content_and_metadata_is_no_change() -> None:
    state, memory_id = created(content="same", metadata={"a": 1})
    with pytest.raises(InvalidInput) as info:
        decide(state, Revise(memory_id=memory_id, content="same"), ctx())
    assert info.value.detail["reason"] == "no_change"
    # same content, different metadata is a real change
    [event] = decide(state, Revise(memory_id=memory_id, content="same", metadata={"a": 2}), ctx())
    assert isinstance(event, MemoryRevised) and event.data.metadata == {"a": 2}
    # empty metadata means "keep", like absent metadata
    with pytest.raises(InvalidInput):
        decide(state, Revise(memory_id=memory_id, content="same", metadata={}), ctx())
    [event] = decide(state, Revise(memory_id=memory_id, content="new", metadata={}), ctx())
    assert isinstance(event, MemoryRevised) and event.data.metadata == {"a": 1}


@pytest.mark.parametrize("command", [
    Revise(memory_id="m1", content="x"),
    Tag(memory_id="m1", add=("a",)),
    SetMetadata(memory_id="m1", set={"a": 1}),
    Forget(memory_id="m1", reason="gdpr"),
])
def test_commands_on_missing_memories_are_not_found(command) -> None:
    with pytest.raises(NotFound):
        decide(MemoryState(memory_id="m1"), command, ctx())


def test_forgotten_memories_cannot_be_changed_or_forgotten_again() -> None:
    state, memory_id = created()
    state = apply(state, Forget(memory_id=memory_id, reason="user asked"), 2)
    assert state.forgotten and not state.live
    for command in (Revise(memory_id=memory_id, content="x"),
                    Forget(memory_id=memory_id, reason="again")):
        with pytest.raises(NotFound):
            decide(state, command, ctx())


# --- tag / metadata / link / forget ---------------------------------------------------------


def test_tag_records_only_effective_changes() -> None:
    state, memory_id = created(tags=("a", "b"))
    [event] = decide(state, Tag(memory_id=memory_id, add=("b", "c"), remove=("a", "zz")), ctx())
    assert isinstance(event, MemoryTagged)
    assert (event.data.added, event.data.removed) == (("c",), ("a",))
    assert evolve(state, event, 2).tags == {"b", "c"}


def test_tag_rules() -> None:
    state, memory_id = created(tags=("a",))
    with pytest.raises(InvalidInput):
        decide(state, Tag(memory_id=memory_id), ctx())  # nothing requested
    with pytest.raises(InvalidInput):
        decide(state, Tag(memory_id=memory_id, add=("x",), remove=("x",)), ctx())
    with pytest.raises(InvalidInput) as info:
        decide(state, Tag(memory_id=memory_id, add=("a",)), ctx())
    assert info.value.detail["reason"] == "no_change"


def test_set_metadata_distinguishes_json_types_and_unsets() -> None:
    state, memory_id = created(metadata={"n": 1, "gone": "x"})
    [event] = decide(state, SetMetadata(memory_id=memory_id, set={"n": True},
                                        unset=("gone", "absent")), ctx())
    assert isinstance(event, MemoryMetadataChanged)
    assert event.data.set == {"n": True} and event.data.unset == ("gone",)
    assert evolve(state, event, 3).metadata == {"n": True}
    with pytest.raises(InvalidInput):
        decide(state, SetMetadata(memory_id=memory_id, set={"n": 1}), ctx())  # no change
    with pytest.raises(InvalidInput):
        decide(state, SetMetadata(memory_id=memory_id, set={"a": 1}, unset=("a",)), ctx())


def test_link_needs_a_live_target_and_no_duplicate_edge() -> None:
    state, memory_id = created()
    target, target_id = created(content="other")
    command = Link(memory_id=memory_id, target_memory_id=target_id, relation="supports")
    [event] = decide(state, command, ctx(), target)
    assert isinstance(event, MemoryLinked)
    linked = evolve(state, event, 5)
    with pytest.raises(InvalidInput):
        decide(linked, command, ctx(), target)
    gone = apply(target, Forget(memory_id=target_id, reason="x"), 6)
    with pytest.raises(NotFound):
        decide(state, command, ctx(), gone)
    with pytest.raises(NotFound):
        decide(state, command, ctx(), MemoryState(memory_id=target_id))
    with pytest.raises(InvalidInput):
        decide(state, Link(memory_id=memory_id, target_memory_id=memory_id), ctx(), state)


def test_forget_event() -> None:
    state, memory_id = created()
    [event] = decide(state, Forget(memory_id=memory_id, reason="pii"), ctx())
    assert isinstance(event, MemoryForgotten) and event.data.reason == "pii"


# --- fold, idempotency bookkeeping, results -------------------------------------------------


def test_fold_tracks_last_seq_and_applied_commands() -> None:
    c1, c2 = ctx(), ctx()
    memory_id = creation_memory_id(NS, c1.command_id)
    [e1] = decide(MemoryState(memory_id=memory_id), Remember(content="a"), c1)
    s1 = evolve(MemoryState(memory_id=memory_id), e1, 3)
    [e2] = decide(s1, Revise(memory_id=memory_id, content="b"), c2)
    state = fold(memory_id, [(e1, 3), (e2, 9)])
    assert state.last_seq == 9
    assert state.applied == {c1.command_id: 3, c2.command_id: 9}
    with pytest.raises(ValueError):
        evolve(MemoryState(memory_id="other"), e1, 1)


def test_result_for_reports_the_created_version_and_revision() -> None:
    state, memory_id = created()
    [event] = decide(state, Tag(memory_id=memory_id, add=("x",)), ctx())
    result = result_for(event, 12)
    assert (result.event_type, result.version_id, result.seq, result.revision) == (
        "MemoryTagged", None, 12, 12)
    [revised] = decide(state, Revise(memory_id=memory_id, content="v2"), ctx())
    assert isinstance(revised, MemoryRevised)
    assert result_for(revised, 13, duplicate=True).version_id == revised.data.version_id
    assert msgspec.json.decode(msgspec.json.encode(result))["event_type"] == "MemoryTagged"
