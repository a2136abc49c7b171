"""VersionGraph: log order and paging, ancestry and lowest common ancestors vs brute force."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.dag import InvalidGraph, VersionGraph, VersionNode
from libs.events.errors import InvalidInput, NotFound


def node(version_id: str, *parents: str, seq: int) -> VersionNode:
    return VersionNode(version_id, parents, seq)


@st.composite
def random_dags(draw: st.DrawFn) -> list[VersionNode]:
    """Random DAGs: version i picks 1-3 parents among older versions; seqs increase with gaps."""
    size = draw(st.integers(min_value=1, max_value=24))
    nodes: list[VersionNode] = []
    seq = 0
    for i in range(size):
        seq += draw(st.integers(min_value=1, max_value=3))
        parents: list[str] = []
        if i:
            picks = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=3, unique=True))
            parents = [nodes[p].version_id for p in picks]
        nodes.append(VersionNode(f"v{i:02d}", tuple(sorted(parents)), seq))
    return nodes


def brute_ancestors(nodes: list[VersionNode]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for n in nodes:  # oldest first, so parents are done
        found[n.version_id] = {n.version_id}.union(*(found[p] for p in n.parent_ids))
    return found


def brute_lcas(nodes: list[VersionNode], *heads: str) -> list[str]:
    anc = brute_ancestors(nodes)
    common = set.intersection(*(anc[h] for h in heads))
    lowest = [x for x in common if not any(x != y and x in anc[y] for y in common)]
    seq = {n.version_id: n.seq for n in nodes}
    return sorted(lowest, key=lambda v: (seq[v], v), reverse=True)


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.data())
def test_common_ancestors_match_brute_force(nodes: list[VersionNode], data: st.DataObject) -> None:
    graph = VersionGraph.from_nodes(nodes)
    ids = [n.version_id for n in nodes]
    a, b = data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids))
    expected = brute_lcas(nodes, a, b)
    assert list(graph.common_ancestors(a, b)) == expected
    assert graph.common_ancestors(a, b) == graph.common_ancestors(b, a)
    assert graph.common_ancestor(a, b) == expected[0]  # a single root: always one


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.data())
def test_merge_base_of_many_heads_matches_brute_force(
    nodes: list[VersionNode], data: st.DataObject
) -> None:
    graph = VersionGraph.from_nodes(nodes)
    ids = [n.version_id for n in nodes]
    heads = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4))
    expected = brute_lcas(nodes, *heads)
    assert list(graph.lowest_common_ancestors(heads)) == expected
    assert graph.merge_base(heads) == expected[0]


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.data())
def test_ancestry_matches_brute_force(nodes: list[VersionNode], data: st.DataObject) -> None:
    graph = VersionGraph.from_nodes(nodes)
    anc = brute_ancestors(nodes)
    ids = [n.version_id for n in nodes]
    a, b = data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids))
    assert graph.is_ancestor(a, b) == (a in anc[b])
    assert graph.ancestors(b) == anc[b]


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.data())
def test_log_is_topological_deterministic_and_pages_cover_it(
    nodes: list[VersionNode], data: st.DataObject
) -> None:
    shuffled = list(nodes)
    random.Random(data.draw(st.integers())).shuffle(shuffled)
    graph = VersionGraph.from_nodes(shuffled)
    head = data.draw(st.sampled_from([n.version_id for n in nodes]))
    limit = data.draw(st.integers(min_value=1, max_value=7))
    entries: list[VersionNode] = []
    cursor: str | None = None
    while True:
        page = graph.log(head, limit=limit, cursor=cursor)
        assert len(page.entries) <= limit
        entries += page.entries
        if page.next_cursor is None:
            break
        assert len(page.entries) == limit and page.next_cursor == page.entries[-1].version_id
        cursor = page.next_cursor
    anc = brute_ancestors(nodes)[head]
    expected = sorted((n for n in nodes if n.version_id in anc), key=lambda n: n.seq, reverse=True)
    assert entries == expected
    position = {n.version_id: i for i, n in enumerate(entries)}
    assert all(position[p] > position[n.version_id] for n in entries for p in n.parent_ids)


def criss_cross() -> VersionGraph:
    """r -> a, b; each line merges the other (m1, m2 have parents a, b); x on m1, y on m2."""
    return VersionGraph.from_nodes(
        [
            node("r", seq=1),
            node("a", "r", seq=2),
            node("b", "r", seq=3),
            node("m1", "a", "b", seq=4),
            node("m2", "a", "b", seq=5),
            node("x", "m1", seq=6),
            node("y", "m2", seq=7),
        ]
    )


def test_criss_cross_has_two_lowest_common_ancestors_newest_chosen() -> None:
    graph = criss_cross()
    assert graph.common_ancestors("x", "y") == ("b", "a")
    assert graph.common_ancestor("x", "y") == "b"
    assert graph.common_ancestors("m1", "m2") == ("b", "a")
    assert graph.common_ancestor("a", "x") == "a"  # an ancestor is its own merge base
    assert graph.common_ancestor("x", "x") == "x"
    assert graph.merge_base(["x", "y", "a"]) == "a"


def test_log_tie_break_on_equal_seq_is_by_id_descending() -> None:
    graph = VersionGraph.from_nodes(
        [node("r", seq=1), node("b", "r", seq=2), node("c", "r", seq=2), node("m", "b", "c", seq=3)]
    )
    assert [n.version_id for n in graph.log("m").entries] == ["m", "c", "b", "r"]
    assert graph.log("m", limit=2).next_cursor == "c"
    assert [n.version_id for n in graph.log("m", limit=2, cursor="c").entries] == ["b", "r"]


def test_graph_structure_queries() -> None:
    graph = criss_cross()
    assert len(graph) == 7 and "m1" in graph and "nope" not in graph
    assert graph.roots() == ("r",)
    assert graph.tips() == ("y", "x")
    assert graph.children("a") == ("m1", "m2")
    assert graph.node("m1").parent_ids == ("a", "b")
    assert [n.version_id for n in graph] == ["r", "a", "b", "m1", "m2", "x", "y"]


def test_parents_are_stored_sorted_and_identical_re_add_is_a_no_op() -> None:
    graph = VersionGraph.from_nodes(
        [node("r", seq=1), node("a", "r", seq=2), node("b", "r", seq=3)]
    )
    assert graph.add(node("m", "b", "a", seq=4))
    assert graph.node("m").parent_ids == ("a", "b")
    assert not graph.add(node("m", "a", "b", seq=9))
    assert graph.node("m").seq == 4


@pytest.mark.parametrize(
    "bad",
    [
        node("x", "missing", seq=5),  # unknown parent
        node("x", "r", seq=1),  # not newer than its parent
        node("x", "r", "r", seq=5),  # parent listed twice
        node("a", seq=5),  # id reused with other parents
    ],
)
def test_records_that_break_the_dag_are_refused(bad: VersionNode) -> None:
    graph = VersionGraph.from_nodes([node("r", seq=1), node("a", "r", seq=2)])
    with pytest.raises(InvalidGraph):
        graph.add(bad)
    assert len(graph) == 2


def test_unknown_versions_bad_limits_and_foreign_cursors() -> None:
    graph = criss_cross()
    with pytest.raises(NotFound):
        graph.log("nope")
    with pytest.raises(NotFound):
        graph.common_ancestor("x", "nope")
    with pytest.raises(NotFound):
        graph.is_ancestor("nope", "x")
    with pytest.raises(InvalidInput):
        graph.log("x", limit=0)
    with pytest.raises(InvalidInput):
        graph.log("x", cursor="y")  # y is not in x's history
    with pytest.raises(InvalidInput):
        graph.merge_base([])


def test_disconnected_versions_have_no_common_ancestor() -> None:
    graph = VersionGraph.from_nodes([node("r1", seq=1), node("r2", seq=2)])
    assert graph.common_ancestors("r1", "r2") == ()
    assert graph.common_ancestor("r1", "r2") is None
    assert graph.merge_base(["r1", "r2"]) is None


def test_log_order_cache_survives_appends_and_many_heads() -> None:
    graph = VersionGraph()
    graph.add(node("v0", seq=0))
    for i in range(1, 30):
        graph.add(node(f"v{i}", f"v{i - 1}", seq=i))
        page = graph.log(f"v{i}", limit=1, cursor=f"v{i}")  # caches every head's order
        assert page.entries[0].version_id == f"v{i - 1}"
    assert [n.version_id for n in graph.log("v5", limit=3, cursor="v4").entries] == [
        "v3",
        "v2",
        "v1",
    ]
