"""The pure core of the history commands: revise/commit, merge and revert produce new versions.

Each ``plan_*`` function checks its rule against the graph and answers with a
:class:`VersionSpec` (the id, parents and content of the version to record) without changing
anything; the caller appends the event and then adds the version to the graph and moves the
branch head (:meth:`~libs.dag.branches.BranchTable.advance`). Contents are read through a
``content_of(version_id)`` callable, so only the versions a plan needs are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from libs.dag.graph import VersionGraph
from libs.dag.merge3 import MergeResult, Strategy, merge_many, validate_strategy
from libs.events.errors import InvalidInput
from libs.events.ids import content_hash
from libs.events.model import MetadataValue
from libs.events.versions import version_id

__all__ = [
    "ContentOf",
    "MergePlan",
    "VersionSpec",
    "make_version",
    "plan_merge",
    "plan_revert",
    "plan_revise",
]

ContentOf = Callable[[str], str]
"""Looks up a version's content by id (e.g. ``dict.__getitem__`` over preloaded rows)."""


class VersionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A version to record: its content-addressed id, sorted parents, content and metadata."""

    version_id: str
    parent_ids: tuple[str, ...]
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue]


class MergePlan(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of planning a merge.

    ``heads`` keeps the caller's order (head 0 is ``ours``, the branch merged into); the version's
    ``parent_ids`` are the same ids sorted. ``base_id`` is the common ancestor the three-way merge
    used. ``version`` is ``None`` exactly when the merge conflicts; then ``result.conflicts`` says
    where, and nothing must be recorded.
    """

    strategy: Strategy
    heads: tuple[str, ...]
    base_id: str | None
    result: MergeResult
    version: VersionSpec | None


def make_version(
    memory_id: str,
    content: str,
    parents: Sequence[str],
    metadata: Mapping[str, MetadataValue] | None = None,
) -> VersionSpec:
    """The version with this content, metadata and parents, with its id (no rules checked)."""
    meta = dict(metadata or {})
    digest = content_hash(content)
    return VersionSpec(
        version_id=version_id(memory_id, digest, meta, parents),
        parent_ids=tuple(sorted(parents)),
        content=content,
        content_hash=digest,
        metadata=meta,
    )


def plan_revise(
    memory_id: str,
    graph: VersionGraph,
    parent: str,
    content: str,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> VersionSpec:
    """A new version with one parent (a revision, or a commit onto a branch head)."""
    graph.node(parent)
    return make_version(memory_id, content, (parent,), metadata)


def plan_merge(
    memory_id: str,
    graph: VersionGraph,
    heads: Sequence[str],
    strategy: Strategy | str,
    content_of: ContentOf,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> MergePlan:
    """Merge two or more heads into one version whose parents are all of them.

    Heads must be distinct and none an ancestor of another: merging a version into its own
    descendant adds nothing (move the branch forward instead), so it is refused.
    """
    chosen = validate_strategy(strategy)
    if len(heads) < 2:
        raise InvalidInput("a merge needs at least two heads", field="heads", value=len(heads))
    if len(set(heads)) != len(heads):
        raise InvalidInput("a head is listed twice", field="heads")
    for head in heads:
        graph.node(head)
    for older in heads:
        for newer in heads:
            if older != newer and graph.is_ancestor(older, newer):
                raise InvalidInput(
                    "a head is an ancestor of another head: fast-forward instead of merging",
                    field="heads",
                    ancestor=older,
                    descendant=newer,
                )
    base_id = graph.merge_base(heads)
    base = content_of(base_id) if chosen == "three_way" and base_id is not None else ""
    result = merge_many(chosen, base, [content_of(head) for head in heads])
    version = (
        make_version(memory_id, result.text, heads, metadata) if result.text is not None else None
    )
    return MergePlan(
        strategy=chosen, heads=tuple(heads), base_id=base_id, result=result, version=version
    )


def plan_revert(
    memory_id: str,
    graph: VersionGraph,
    head: str,
    target: str,
    content_of: ContentOf,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> VersionSpec:
    """A new version on top of ``head`` whose content equals that of ``target``.

    ``target`` must be an older version in the history of ``head``. History is never rewound:
    the revert is a new child of ``head``, so reverting a revert is just another revert.
    """
    graph.node(target)
    if target == head or not graph.is_ancestor(target, head):
        raise InvalidInput(
            "revert target must be an older version in the history of the head",
            field="target",
            value=target,
            head=head,
        )
    return make_version(memory_id, content_of(target), (head,), metadata)
