"""Named branches of a memory and the rules for moving their heads.

A branch is a name pointing at a head version. A head only moves forward (to a descendant of the
current head), and a caller may state the head it expects, so two agents committing to one branch
cannot overwrite each other's work: the second gets :class:`~libs.events.errors.Conflict`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, Literal

from libs.dag.graph import VersionGraph
from libs.events.errors import Conflict, InvalidInput, NotFound
from libs.events.tokens import validate_token

__all__ = ["DEFAULT_BRANCH", "BranchTable", "HeadMove", "classify_move", "validate_branch"]

DEFAULT_BRANCH: Final = "main"
"""The branch every memory starts with, at its first version; it cannot be deleted."""

HeadMove = Literal["unchanged", "fast_forward", "rewind", "diverged"]
"""How a head would move: not at all, to a descendant, to an ancestor, or sideways."""


def validate_branch(name: object) -> str:
    """A branch name follows the subject-token rules (``[a-z0-9_-]{1,64}``), so it can appear
    verbatim in subjects, URLs and keys; anything else raises :class:`InvalidInput`."""
    return validate_token(name, "branch")


def classify_move(graph: VersionGraph, current: str, new: str) -> HeadMove:
    """Classify moving a head from ``current`` to ``new`` (both must be in ``graph``)."""
    if current == new:
        graph.node(current)
        return "unchanged"
    if graph.is_ancestor(current, new):
        return "fast_forward"
    if graph.is_ancestor(new, current):
        return "rewind"
    return "diverged"


class BranchTable(Mapping[str, str]):
    """An immutable map of branch name to head version id; changes return a new table."""

    __slots__ = ("_heads",)

    def __init__(self, heads: Mapping[str, str] | None = None) -> None:
        self._heads: dict[str, str] = {}
        for name, head in (heads or {}).items():
            self._heads[validate_branch(name)] = head

    @classmethod
    def initial(cls, root: str) -> BranchTable:
        """The branches of a new memory: :data:`DEFAULT_BRANCH` at its first version."""
        return cls({DEFAULT_BRANCH: root})

    def __getitem__(self, name: str) -> str:
        return self._heads[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._heads))

    def __len__(self) -> int:
        return len(self._heads)

    def __repr__(self) -> str:
        return f"BranchTable({dict(self.heads())!r})"

    def head(self, name: str) -> str:
        """The head of branch ``name``, or :class:`NotFound`."""
        found = self._heads.get(name)
        if found is None:
            raise NotFound("branch not found", branch=name)
        return found

    def heads(self) -> tuple[tuple[str, str], ...]:
        """Every ``(branch, head)`` pair, sorted by branch name."""
        return tuple((name, self._heads[name]) for name in self)

    def branches_at(self, version_id: str) -> tuple[str, ...]:
        """Names of the branches whose head is ``version_id``, sorted."""
        return tuple(name for name in self if self._heads[name] == version_id)

    def create(self, name: str, at: str, graph: VersionGraph) -> BranchTable:
        """A new branch ``name`` at any existing version ``at``."""
        validate_branch(name)
        graph.node(at)
        if name in self._heads:
            raise Conflict("branch already exists", branch=name, head=self._heads[name])
        return BranchTable({**self._heads, name: at})

    def advance(
        self,
        name: str,
        new_head: str,
        graph: VersionGraph,
        expected_head: str | None = None,
    ) -> BranchTable:
        """Move branch ``name`` forward to ``new_head`` (a descendant of its head, or the head).

        ``expected_head``, when given, must be the current head (optimistic concurrency). A move
        to an ancestor or to an unrelated version is refused with :class:`Conflict`: a commit or
        merge always makes the new head a descendant, so anything else would lose history.
        """
        current = self._check_expected(name, expected_head)
        move = classify_move(graph, current, new_head)
        if move == "unchanged":
            return self
        if move != "fast_forward":
            raise Conflict(
                "branch head can only move forward",
                branch=name,
                head=current,
                new_head=new_head,
                move=move,
            )
        return BranchTable({**self._heads, name: new_head})

    def delete(self, name: str, expected_head: str | None = None) -> BranchTable:
        """Remove branch ``name`` (its versions stay in the DAG); the default branch stays."""
        if name == DEFAULT_BRANCH:
            raise InvalidInput("the default branch cannot be deleted", field="branch", value=name)
        self._check_expected(name, expected_head)
        return BranchTable({key: value for key, value in self._heads.items() if key != name})

    def _check_expected(self, name: str, expected_head: str | None) -> str:
        current = self.head(name)
        if expected_head is not None and expected_head != current:
            raise Conflict(
                "branch head moved", branch=name, head=current, expected_head=expected_head
            )
        return current
