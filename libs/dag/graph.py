"""The version DAG of one memory, in memory: ancestry, log pages and common ancestors.

A :class:`VersionGraph` is built from ``(version_id, parent_ids, seq)`` records, e.g. the rows of
``memory_versions``. ``seq`` is the stream position of the event that created the version, so a
parent always has a lower ``seq`` than its children; every walk here relies on that: visiting
versions by descending ``seq`` visits every child before its parents.

The graph is append-only. Adding a version never changes an existing one, so any answer about
existing versions (a log, an ancestry, a cache) stays true after later additions.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import msgspec

from libs.events.errors import InvalidInput, NotFound

__all__ = [
    "DEFAULT_LOG_LIMIT",
    "MAX_LOG_LIMIT",
    "InvalidGraph",
    "LogPage",
    "VersionGraph",
    "VersionNode",
]

DEFAULT_LOG_LIMIT: Final = 50
"""Log entries per page when the caller does not say."""

MAX_LOG_LIMIT: Final = 1000
"""Largest log page served at once."""

_ORDER_CACHE_SIZE: Final = 8
"""Heads whose full log order is kept for cursor paging (a log never changes for a fixed head)."""


class InvalidGraph(ValueError):
    """Version records that cannot form a DAG (unknown parent, parent not older, id reused).

    This is a broken read model or event history, never a caller mistake, so it is deliberately
    not a :class:`~libs.events.errors.MnemosError` (it surfaces as an internal error).
    """


class VersionNode(msgspec.Struct, frozen=True):
    """One version: its id, its parents' ids (sorted, as in its id) and its stream ``seq``."""

    version_id: str
    parent_ids: tuple[str, ...]
    seq: int


class LogPage(msgspec.Struct, frozen=True):
    """A page of a log, newest first; pass ``next_cursor`` back for more (``None``: the end)."""

    entries: tuple[VersionNode, ...]
    next_cursor: str | None


def _key(node: VersionNode) -> tuple[int, str]:
    """Log order key: descending by this is newest first, ties broken by version id."""
    return (node.seq, node.version_id)


class VersionGraph:
    """An append-only DAG of versions with ancestry queries (see the module docstring)."""

    def __init__(self) -> None:
        self._nodes: dict[str, VersionNode] = {}
        self._children: dict[str, list[str]] = {}
        self._orders: OrderedDict[str, tuple[VersionNode, ...]] = OrderedDict()
        self._positions: dict[str, dict[str, int]] = {}

    @classmethod
    def from_nodes(cls, nodes: Iterable[VersionNode]) -> VersionGraph:
        """Build a graph from records in any order (they are added by ascending ``seq``)."""
        graph = cls()
        for node in sorted(nodes, key=_key):
            graph.add(node)
        return graph

    def add(self, node: VersionNode) -> bool:
        """Add a version whose parents are present and older; ``False`` if it already exists.

        Content addressing makes re-adding an identical version (same id, same parents) a no-op:
        two branches that commit the same content onto the same parent share that version.
        """
        parents = tuple(sorted(node.parent_ids))
        existing = self._nodes.get(node.version_id)
        if existing is not None:
            if existing.parent_ids != parents:
                raise InvalidGraph(f"version {node.version_id} re-added with other parents")
            return False
        if len(set(parents)) != len(parents):
            raise InvalidGraph(f"version {node.version_id} lists a parent twice")
        for parent in parents:
            known = self._nodes.get(parent)
            if known is None:
                raise InvalidGraph(f"version {node.version_id} has unknown parent {parent}")
            if known.seq >= node.seq:
                raise InvalidGraph(f"version {node.version_id} is not newer than parent {parent}")
        stored = VersionNode(node.version_id, parents, node.seq)
        self._nodes[node.version_id] = stored
        self._children[node.version_id] = []
        for parent in parents:
            self._children[parent].append(node.version_id)
        return True

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, version_id: object) -> bool:
        return version_id in self._nodes

    def __iter__(self) -> Iterator[VersionNode]:
        """Every version, in the order added."""
        return iter(self._nodes.values())

    def node(self, version_id: str) -> VersionNode:
        """The version with this id, or :class:`NotFound`."""
        found = self._nodes.get(version_id)
        if found is None:
            raise NotFound("version not found", version_id=version_id)
        return found

    def children(self, version_id: str) -> tuple[str, ...]:
        """Ids of the versions that name this one as a parent, oldest first."""
        self.node(version_id)
        return tuple(self._children[version_id])

    def roots(self) -> tuple[str, ...]:
        """Versions without parents (a memory has exactly one: its first version)."""
        return tuple(n.version_id for n in self._nodes.values() if not n.parent_ids)

    def tips(self) -> tuple[str, ...]:
        """Versions without children, newest first (whether or not a branch points at them)."""
        tips = [n for n in self._nodes.values() if not self._children[n.version_id]]
        return tuple(n.version_id for n in sorted(tips, key=_key, reverse=True))

    def walk(self, head: str) -> Iterator[VersionNode]:
        """Lazily yield ``head`` and all its ancestors, newest first (descending ``seq``, id).

        A heap ordered by ``seq`` yields each version only after all its children among the
        ancestors: they are newer, so they were popped (and pushed their parents) first.
        """
        start = self.node(head)
        heap = [(-start.seq, _Desc(start.version_id), start.version_id)]
        seen = {head}
        while heap:
            _, _, version_id = heapq.heappop(heap)
            node = self._nodes[version_id]
            yield node
            for parent in node.parent_ids:
                if parent not in seen:
                    seen.add(parent)
                    p = self._nodes[parent]
                    heapq.heappush(heap, (-p.seq, _Desc(parent), parent))

    def log(self, head: str, limit: int = DEFAULT_LOG_LIMIT, cursor: str | None = None) -> LogPage:
        """A page of the history of ``head``: it and its ancestors, newest first.

        The order is descending ``seq`` then descending version id: a topological order (children
        before parents) that is the same on every replay. ``cursor`` is the ``next_cursor`` of the
        previous page (the id of its last entry); it must be in this head's history.
        """
        if not 1 <= limit <= MAX_LOG_LIMIT:
            raise InvalidInput(f"limit must be in 1..{MAX_LOG_LIMIT}", field="limit", value=limit)
        if cursor is None:
            entries: list[VersionNode] = []
            for node in self.walk(head):
                if len(entries) == limit:
                    return LogPage(tuple(entries), entries[-1].version_id)
                entries.append(node)
            return LogPage(tuple(entries), None)
        order, positions = self._order(head)
        at = positions.get(cursor)
        if at is None:
            raise InvalidInput("cursor is not in this history", field="cursor", value=cursor)
        page = order[at + 1 : at + 1 + limit]
        more = at + 1 + limit < len(order)
        return LogPage(page, page[-1].version_id if more else None)

    def ancestors(self, version_id: str) -> frozenset[str]:
        """Ids of ``version_id`` and all its ancestors."""
        return frozenset(node.version_id for node in self.walk(version_id))

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True if ``ancestor`` is ``descendant`` or reachable from it through parents."""
        target = self.node(ancestor)
        start = self.node(descendant)
        # Versions older than the target cannot lead to it, so the walk stops at its seq.
        heap = [(-start.seq, descendant)]
        seen = {descendant}
        while heap:
            neg_seq, version_id = heapq.heappop(heap)
            if version_id == ancestor:
                return True
            if -neg_seq <= target.seq:
                continue
            for parent in self._nodes[version_id].parent_ids:
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(heap, (-self._nodes[parent].seq, parent))
        return False

    def common_ancestors(self, a: str, b: str) -> tuple[str, ...]:
        """All lowest common ancestors of ``a`` and ``b``, newest first.

        A lowest common ancestor is an ancestor of both (a version counts as its own ancestor)
        that is not an ancestor of another common ancestor. There are several only after
        criss-cross merges; none only if the two versions share no root.
        """
        return self.lowest_common_ancestors((a, b))

    def common_ancestor(self, a: str, b: str) -> str | None:
        """The merge base of ``a`` and ``b``: of their lowest common ancestors, the newest.

        After criss-cross merges the lowest common ancestors tie; the one with the highest
        ``seq`` (then highest id) is chosen: it is deterministic, and the most recent shared
        state is usually the smallest diff to both sides.
        """
        return self.merge_base((a, b))

    def merge_base(self, heads: Sequence[str]) -> str | None:
        """The merge base of any number of heads: the newest of their lowest common ancestors."""
        found = self.lowest_common_ancestors(heads)
        return found[0] if found else None

    def lowest_common_ancestors(self, heads: Sequence[str]) -> tuple[str, ...]:
        """The lowest common ancestors of all ``heads`` (ancestors of every head that are not
        ancestors of another such version), newest first.

        Versions are painted, newest first, with one bit per head they are reachable from and a
        STALE bit when below a found ancestor. A version's paint is final when it is popped (its
        children are newer, so they were popped before): all head bits and not STALE makes it
        lowest. The walk ends once only STALE versions are queued: nothing below them is lowest.
        """
        if not heads:
            raise InvalidInput("no heads given", field="heads")
        every = (1 << len(heads)) - 1
        stale = 1 << len(heads)
        flags: dict[str, int] = {}
        for bit, head in enumerate(heads):
            flags[self.node(head).version_id] = flags.get(head, 0) | 1 << bit
        heap = [(-self._nodes[v].seq, _Desc(v), v) for v in flags]
        heapq.heapify(heap)
        live = len(heap)  # queued versions not yet STALE
        found: list[str] = []
        while live:
            _, _, version_id = heapq.heappop(heap)
            mark = flags[version_id]
            if not mark & stale:
                live -= 1
                if mark & every == every:
                    found.append(version_id)
                    mark |= stale
            for parent in self._nodes[version_id].parent_ids:
                before = flags.get(parent)
                after = (before or 0) | mark
                if before is None:
                    heapq.heappush(heap, (-self._nodes[parent].seq, _Desc(parent), parent))
                    live += not after & stale
                elif after & stale and not before & stale:
                    live -= 1  # a queued version just became STALE
                flags[parent] = after
        return tuple(found)

    def _order(self, head: str) -> tuple[tuple[VersionNode, ...], dict[str, int]]:
        """The full log order of ``head`` and each entry's position, cached per head (LRU)."""
        order = self._orders.get(head)
        if order is None:
            order = tuple(self.walk(head))
            self._orders[head] = order
            self._positions[head] = {n.version_id: i for i, n in enumerate(order)}
            if len(self._orders) > _ORDER_CACHE_SIZE:
                evicted, _ = self._orders.popitem(last=False)
                del self._positions[evicted]
        else:
            self._orders.move_to_end(head)
        return order, self._positions[head]


class _Desc(str):
    """A string that sorts in reverse, so a min-heap pops the highest id among equal seqs."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)
