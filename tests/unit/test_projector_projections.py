"""The projector's pure projections: invariants and statements, without any server."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest

from libs.consumer import is_transient
from libs.events import (
    Actor,
    MemoryCreated,
    MemoryCreatedData,
    MemoryRevised,
    MemoryRevisedData,
    MemoryTagged,
    MemoryTaggedData,
    content_hash,
    derive_event_id,
    event_subject,
    new_command_id,
    new_memory_id,
    version_id,
)
from libs.readmodel.projections import (
    Embedding,
    InvariantViolation,
    check_subject,
    content_of,
    project,
)
from services.projector.batch import is_poison

MEMORY = new_memory_id()


def _envelope() -> dict[str, object]:
    command_id = new_command_id()
    return {"id": derive_event_id("ns", command_id), "ns": "ns", "aggregate": "memory",
            "aggregate_id": MEMORY, "actor": Actor(principal="p"), "command_id": command_id,
            "correlation_id": command_id, "at": datetime(2026, 1, 1, tzinfo=UTC)}


def _created(content: str = "hello", tags: tuple[str, ...] = ("b", "a", "b")) -> MemoryCreated:
    digest = content_hash(content)
    return MemoryCreated(schema=2, **_envelope(), data=MemoryCreatedData(  # type: ignore[arg-type]
        memory_id=MEMORY, version_id=version_id(MEMORY, digest, {}, []), kind="note",
        content=content, content_hash=digest, tags=tags,
        occurred_at=datetime(2025, 6, 1, tzinfo=UTC)))


def _revised(parent: str, content: str = "v2") -> MemoryRevised:
    digest = content_hash(content)
    return MemoryRevised(schema=1, **_envelope(), data=MemoryRevisedData(  # type: ignore[arg-type]
        version_id=version_id(MEMORY, digest, {}, [parent]), parent_version_id=parent,
        content=content, content_hash=digest))


EMBEDDING = Embedding("model", np.zeros(3, dtype=np.float32))


def test_created_inserts_memory_version_event_and_result() -> None:
    statements = project(_created(), 7, EMBEDDING)
    targets = [s.query.split()[2] for s in statements]
    assert targets == ["memories", "memory_versions", "memory_branches", "memory_events",
                       "command_results"]
    memory = statements[0]
    assert memory.expect_rows == 1 and "already exists" in memory.error
    assert memory.params["tags"] == ["a", "b"]  # deduplicated, sorted
    assert memory.params["revision"] == 7 and memory.params["embedding_model"] == "model"
    assert statements[4].params["version_id"] == memory.params["head_version_id"]
    # the inserts carry their row, so a bulk rebuild can load them with COPY
    assert [s.row.table if s.row else None for s in statements] == targets


def test_revision_must_follow_the_head() -> None:
    created = _created()
    update = project(_revised(created.data.version_id), 8, EMBEDDING)[0]
    assert "head_version_id = %(parent)s" in update.query and update.expect_rows == 1
    assert update.params["parent_ids"] == [created.data.version_id]


def test_tagging_has_no_version_and_touches_an_existing_memory() -> None:
    event = MemoryTagged(schema=1, **_envelope(),  # type: ignore[arg-type]
                         data=MemoryTaggedData(added=("x",)))
    statements = project(event, 9, None)
    assert statements[0].expect_rows == 1 and "does not exist" in statements[0].error
    assert statements[-1].params["version_id"] is None
    assert content_of(event) is None


@pytest.mark.parametrize("field", ["content_hash", "version_id", "memory_id"])
def test_content_addressing_is_checked(field: str) -> None:
    created = _created()
    bad = msgspec.structs.replace(created, data=msgspec.structs.replace(
        created.data, **{field: "0" * 32}))
    with pytest.raises(InvariantViolation):
        project(bad, 1, None)


def test_a_revision_id_covers_its_parent() -> None:
    revised = _revised("parent-a")
    moved = msgspec.structs.replace(
        revised, data=msgspec.structs.replace(revised.data, parent_version_id="parent-b"))
    with pytest.raises(InvariantViolation, match="version_id"):
        project(moved, 1, None)


def test_an_event_must_sit_on_its_own_subject() -> None:
    event = _created()
    check_subject(event, event_subject("ns", "memory", MEMORY))
    with pytest.raises(InvariantViolation):
        check_subject(event, event_subject("other", "memory", MEMORY))


def test_poison_and_transient_are_told_apart() -> None:
    import psycopg

    from libs.events import InvalidInput, Unavailable

    assert is_poison(InvalidInput("x")) and is_poison(psycopg.errors.ForeignKeyViolation())
    assert not is_poison(Unavailable("x")) and not is_poison(psycopg.OperationalError())
    assert is_transient(psycopg.OperationalError()) and is_transient(TimeoutError())
    assert not is_transient(InvalidInput("x")) and not is_transient(KeyError("bug"))
