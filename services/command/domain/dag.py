"""The history rules of a memory: branch, commit, merge and revert. Pure — no I/O.

Each ``decide_*`` checks a command against the folded :class:`~services.command.domain.MemoryState`
(its :class:`~services.command.dag_state.DagState`) and returns the events to append. Commands
that move a branch head accept ``expected_head``: when the head moved, the answer is
:class:`Conflict` and nothing is appended. The append itself is guarded by the memory's stream
sequence, so of several writers that read the same head exactly one wins; a loser that named no
``expected_head`` is re-decided on the new head by the handler's retry loop (an automatic rebase).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from libs.dag import DEFAULT_BRANCH, plan_merge, plan_revert, plan_revise, validate_branch
from libs.events import (
    Branch,
    CommandBase,
    Commit,
    Conflict,
    Event,
    InvalidInput,
    MemoryBranched,
    MemoryBranchedData,
    MemoryCommitted,
    MemoryCommittedData,
    MemoryMerged,
    MemoryMergedData,
    MemoryReverted,
    MemoryRevertedData,
    Merge,
    MetadataValue,
    NotFound,
    Revert,
)
from services.command.domain.dag_state import DagState
from services.command.domain.memory import (
    DecisionContext,
    MemoryState,
    _check_content,
    _check_metadata,
    _envelope,
    _require_live,
    moved_occurrence,
)

__all__ = [
    "DAG_COMMANDS",
    "decide_branch",
    "decide_commit",
    "decide_dag",
    "decide_merge",
    "decide_revert",
]

DAG_COMMANDS: Final = (Branch, Commit, Merge, Revert)
"""Command types decided here (the rest are in :mod:`services.command.domain.memory`)."""


def _dag(state: MemoryState) -> DagState:
    _require_live(state)
    if state.dag is None:  # a live memory always has its root version
        raise ValueError(f"memory {state.memory_id} has no version DAG")
    return state.dag


def _head(dag: DagState, branch: str, expected_head: str | None) -> str:
    """The head of ``branch``; :class:`Conflict` when it is not the one the caller expects."""
    head = dag.branches.head(validate_branch(branch))
    if expected_head is not None and expected_head != head:
        raise Conflict(
            f"the head of branch {branch} moved", branch=branch, head=head,
            expected_head=expected_head,
        )
    return head


def _branch_metadata(state: MemoryState, dag: DagState, branch: str, head: str
                     ) -> dict[str, MetadataValue]:
    """Metadata a new version on ``branch`` carries by default: on ``main`` the memory's (as a
    revision does), elsewhere the branch head's."""
    source: Mapping[str, MetadataValue] = (
        state.metadata if branch == DEFAULT_BRANCH else dag.record(head).metadata
    )
    return dict(source)


def decide_branch(state: MemoryState, command: Branch, ctx: DecisionContext) -> list[Event]:
    """A new branch at ``from_version`` (default: the head of ``main``)."""
    dag = _dag(state)
    at = command.from_version or dag.branches.head(DEFAULT_BRANCH)
    dag.branches.create(command.branch, at, dag.graph)  # Conflict if taken, NotFound if unknown
    data = MemoryBranchedData(branch=command.branch, from_version_id=at)
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryBranched(schema=MemoryBranched.SCHEMA, data=data, **envelope)]


def decide_commit(state: MemoryState, command: Commit, ctx: DecisionContext) -> list[Event]:
    """A new version on ``branch`` whose parent is the branch head."""
    # Only main's versions move the memory (its content, and so its time of occurrence).
    if command.occurred_at is not None and command.branch != DEFAULT_BRANCH:
        raise InvalidInput("occurred_at can only move with a commit onto main",
                           field="occurred_at")
    dag = _dag(state)
    head = _head(dag, command.branch, command.expected_head)
    content = _check_content(command.content, ctx.max_content_bytes)
    metadata = (_check_metadata(command.metadata) if command.metadata
                else _branch_metadata(state, dag, command.branch, head))
    spec = plan_revise(state.memory_id, dag.graph, head, content, metadata)
    parent = dag.record(head)
    occurred = moved_occurrence(state, command.occurred_at)
    if (spec.content_hash == parent.content_hash and metadata == dict(parent.metadata)
            and occurred is None):
        raise InvalidInput("no change: content, metadata and occurred_at equal the branch head",
                           reason="no_change")
    data = MemoryCommittedData(
        branch=command.branch, version_id=spec.version_id, parent_version_id=head,
        content=spec.content, content_hash=spec.content_hash, metadata=spec.metadata,
        occurred_at=occurred,
    )
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryCommitted(schema=MemoryCommitted.SCHEMA, data=data, **envelope)]


def decide_merge(state: MemoryState, command: Merge, ctx: DecisionContext) -> list[Event]:
    """Merge a branch head (or versions) into branch ``into``; conflicts append nothing."""
    dag = _dag(state)
    if (command.from_branch is None) == (not command.from_versions):
        raise InvalidInput("name exactly one of from (a branch) or from_versions", field="from")
    ours = _head(dag, command.into, command.expected_head)
    theirs = ([dag.branches.head(command.from_branch)] if command.from_branch is not None
              else list(command.from_versions))
    heads = [ours, *theirs]
    metadata = _branch_metadata(state, dag, command.into, ours)
    plan = plan_merge(state.memory_id, dag.graph, heads, command.strategy, dag.content_of,
                      metadata)
    if plan.version is None:
        raise Conflict(
            f"merging into {command.into} conflicts in {len(plan.result.conflicts)} place(s)",
            branch=command.into, heads=heads, base_version_id=plan.base_id,
            strategy=plan.strategy, conflicts=msgspec.to_builtins(plan.result.conflicts),
            marked=plan.result.marked,
        )
    version = plan.version
    data = MemoryMergedData(
        branch=command.into, version_id=version.version_id, parent_ids=tuple(heads),
        strategy=plan.strategy, base_version_id=plan.base_id, merged_branch=command.from_branch,
        content=version.content, content_hash=version.content_hash, metadata=version.metadata,
    )
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryMerged(schema=MemoryMerged.SCHEMA, data=data, **envelope)]


def decide_revert(state: MemoryState, command: Revert, ctx: DecisionContext) -> list[Event]:
    """A child of the branch head whose content is that of ``to_version`` (an ancestor)."""
    dag = _dag(state)
    head = _head(dag, command.branch, command.expected_head)
    metadata = _branch_metadata(state, dag, command.branch, head)
    spec = plan_revert(state.memory_id, dag.graph, head, command.to_version, dag.content_of,
                       metadata)
    if spec.content_hash == dag.record(head).content_hash:
        raise InvalidInput("no change: the head already has that content", reason="no_change")
    data = MemoryRevertedData(
        branch=command.branch, version_id=spec.version_id, parent_version_id=head,
        reverted_to=command.to_version, content=spec.content, content_hash=spec.content_hash,
        metadata=spec.metadata,
    )
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryReverted(schema=MemoryReverted.SCHEMA, data=data, **envelope)]


def decide_dag(state: MemoryState, command: CommandBase, ctx: DecisionContext) -> list[Event]:
    """Dispatch a history command to its rule."""
    if isinstance(command, Branch):
        return decide_branch(state, command, ctx)
    if isinstance(command, Commit):
        return decide_commit(state, command, ctx)
    if isinstance(command, Merge):
        return decide_merge(state, command, ctx)
    if isinstance(command, Revert):
        return decide_revert(state, command, ctx)
    raise NotFound(f"no history rule for {type(command).__name__}")
