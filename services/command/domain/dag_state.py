"""The version DAG of one memory as part of its folded state. Pure — no I/O.

:class:`DagState` is what the history rules (:mod:`services.command.domain.dag`) need: every
version with its parents, stream ``seq`` and content (merge and revert read old contents), and
the branch heads. :func:`advance_dag` folds one event into it.

The graph and the content map are append-only and content-addressed, so successive states of one
memory share them instead of copying (a fold over 10k versions stays linear): adding a version
never changes an answer about versions a state already had, and every version added comes from an
event stored in the stream. Only the branch table, which does change, is a new value per state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from libs.dag import DEFAULT_BRANCH, BranchTable, VersionGraph, VersionNode
from libs.events import (
    Event,
    MemoryBranched,
    MemoryCommitted,
    MemoryCreated,
    MemoryMerged,
    MemoryReverted,
    MemoryRevised,
    MetadataValue,
)

__all__ = ["DagState", "VersionRecord", "advance_dag", "branch_of", "version_of"]


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """What a version holds besides its place in the graph."""

    content: str
    content_hash: str
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class DagState:
    """Versions (shared, append-only ``graph`` and ``records``) and branch heads of a memory."""

    graph: VersionGraph
    records: dict[str, VersionRecord]
    branches: BranchTable

    def record(self, version_id: str) -> VersionRecord:
        """The content of a version known to the graph."""
        self.graph.node(version_id)  # NotFound for an unknown id
        return self.records[version_id]

    def content_of(self, version_id: str) -> str:
        """A version's content (the ``content_of`` callable the DAG planners take)."""
        return self.record(version_id).content

    def with_version(self, version_id: str, parents: Sequence[str], seq: int,
                     record: VersionRecord, branch: str) -> DagState:
        """The state after a version was recorded on ``branch`` (whose head moves to it)."""
        self.graph.add(VersionNode(version_id, tuple(sorted(parents)), seq))
        self.records.setdefault(version_id, record)
        return replace(self, branches=BranchTable({**self.branches, branch: version_id}))


def version_of(event: Event) -> tuple[str, tuple[str, ...], str, VersionRecord] | None:
    """``(version_id, parents, branch, record)`` of the version an event records, if any."""
    if isinstance(event, MemoryCreated):
        data = event.data
        return data.version_id, (), DEFAULT_BRANCH, VersionRecord(
            data.content, data.content_hash, dict(data.metadata))
    if isinstance(event, MemoryRevised):
        revised = event.data
        return revised.version_id, (revised.parent_version_id,), DEFAULT_BRANCH, VersionRecord(
            revised.content, revised.content_hash, dict(revised.metadata))
    if isinstance(event, MemoryCommitted | MemoryReverted):
        one = event.data
        return one.version_id, (one.parent_version_id,), one.branch, VersionRecord(
            one.content, one.content_hash, dict(one.metadata))
    if isinstance(event, MemoryMerged):
        merged = event.data
        return merged.version_id, merged.parent_ids, merged.branch, VersionRecord(
            merged.content, merged.content_hash, dict(merged.metadata))
    return None


def branch_of(event: Event) -> str | None:
    """The branch whose head an event moves (``None`` for events outside the DAG)."""
    found = version_of(event)
    if found is not None:
        return found[2]
    if isinstance(event, MemoryBranched):
        return event.data.branch
    return None


def advance_dag(dag: DagState | None, event: Event, seq: int) -> DagState | None:
    """The DAG after ``event`` (stored at ``seq``); unchanged for events outside the DAG."""
    if isinstance(event, MemoryCreated):
        dag = DagState(VersionGraph(), {}, BranchTable())
    if dag is None:
        return None
    if isinstance(event, MemoryBranched):
        return replace(dag, branches=BranchTable(
            {**dag.branches, event.data.branch: event.data.from_version_id}))
    found = version_of(event)
    if found is None:
        return dag
    version_id, parents, branch, record = found
    return dag.with_version(version_id, parents, seq, record, branch)
