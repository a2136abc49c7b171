"""Projections of the version-DAG events, without any server: which tables each event writes,
which head it requires, and that only "main" moves the memory's content."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.events import (
    Actor,
    MemoryBranched,
    MemoryBranchedData,
    MemoryCommitted,
    MemoryCommittedData,
    MemoryMerged,
    MemoryMergedData,
    MemoryReverted,
    MemoryRevertedData,
    content_hash,
    derive_event_id,
    new_command_id,
    new_memory_id,
    version_id,
)
from libs.readmodel.projections import InvariantViolation, Statement, content_of, project

MEMORY = new_memory_id()
ROOT = "0" * 32
OTHER = "1" * 32


def _envelope() -> dict[str, object]:
    command_id = new_command_id()
    return {"id": derive_event_id("ns", command_id), "schema": 1, "ns": "ns",
            "aggregate": "memory", "aggregate_id": MEMORY, "actor": Actor(principal="p"),
            "command_id": command_id, "correlation_id": command_id,
            "at": datetime(2026, 1, 1, tzinfo=UTC)}


def _committed(branch: str, content: str = "x\n") -> MemoryCommitted:
    digest = content_hash(content)
    return MemoryCommitted(**_envelope(), data=MemoryCommittedData(  # type: ignore[arg-type]
        branch=branch, version_id=version_id(MEMORY, digest, {}, [ROOT]),
        parent_version_id=ROOT, content=content, content_hash=digest))


def _tables(statements: list[Statement]) -> list[str]:
    return [s.query.split()[2] if s.query.startswith("INSERT") else s.query.split()[1]
            for s in statements]


def test_commit_on_a_side_branch_keeps_the_memory_content() -> None:
    event = _committed("dev")
    statements = project(event, 5, None)
    assert _tables(statements) == ["memory_versions", "memory_branches", "memories",
                                   "memory_events", "command_results"]
    assert "ON CONFLICT DO NOTHING" in statements[0].query  # content-addressed re-creation
    assert statements[1].expect_rows == 1 and statements[1].params["parent"] == ROOT
    assert "content =" not in statements[2].query
    assert content_of(event) is None
    assert statements[-1].params["version_id"] == event.data.version_id


def test_commit_on_main_moves_the_memory_from_its_head() -> None:
    event = _committed("main")
    statements = project(event, 5, None)
    assert "content =" in statements[2].query and "head_version_id = %(parent)s" in (
        statements[2].query)
    assert content_of(event) == "x\n"


def test_merge_checks_its_id_over_all_parents_and_records_the_strategy() -> None:
    digest = content_hash("m\n")
    good = version_id(MEMORY, digest, {}, [ROOT, OTHER])
    data = MemoryMergedData(branch="main", version_id=good, parent_ids=(OTHER, ROOT),
                            strategy="ours", content="m\n", content_hash=digest)
    statements = project(MemoryMerged(**_envelope(), data=data), 9, None)  # type: ignore[arg-type]
    assert statements[0].params["strategy"] == "ours"
    assert statements[1].params["parent"] == OTHER  # the head of "into" is the first parent
    bad = MemoryMergedData(branch="main", version_id=good, parent_ids=(ROOT,), strategy="ours",
                           content="m\n", content_hash=digest)
    with pytest.raises(InvariantViolation):
        project(MemoryMerged(**_envelope(), data=bad), 9, None)  # type: ignore[arg-type]


def test_revert_and_branch() -> None:
    digest = content_hash("old\n")
    data = MemoryRevertedData(branch="main", version_id=version_id(MEMORY, digest, {}, [OTHER]),
                              parent_version_id=OTHER, reverted_to=ROOT, content="old\n",
                              content_hash=digest)
    statements = project(MemoryReverted(**_envelope(), data=data), 9, None)  # type: ignore[arg-type]
    assert statements[0].params["origin"] == "revert"
    assert statements[0].params["reverted_to"] == ROOT
    branched = MemoryBranched(**_envelope(),  # type: ignore[arg-type]
                              data=MemoryBranchedData(branch="dev", from_version_id=ROOT))
    statements = project(branched, 10, None)
    assert _tables(statements)[:2] == ["memories", "memory_branches"]
    assert statements[1].expect_rows == 1
