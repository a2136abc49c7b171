"""Branches: names follow the token rules; heads move forward only, with expected-head checks."""

from __future__ import annotations

import pytest

from libs.dag import (
    DEFAULT_BRANCH,
    BranchTable,
    VersionGraph,
    VersionNode,
    classify_move,
    validate_branch,
)
from libs.events.errors import Conflict, InvalidInput, NotFound


@pytest.fixture
def graph() -> VersionGraph:
    """r -> a -> b, and r -> c (a side line)."""
    return VersionGraph.from_nodes(
        [
            VersionNode("r", (), 1),
            VersionNode("a", ("r",), 2),
            VersionNode("b", ("a",), 3),
            VersionNode("c", ("r",), 4),
        ]
    )


@pytest.mark.parametrize("name", ["main", "feature-1", "agent_7", "x" * 64])
def test_valid_branch_names(name: str) -> None:
    assert validate_branch(name) == name


@pytest.mark.parametrize("name", ["", "Main", "a.b", "a/b", "*", ">", "a b", "x" * 65, 7, None])
def test_invalid_branch_names(name: object) -> None:
    with pytest.raises(InvalidInput):
        validate_branch(name)


def test_classify_move(graph: VersionGraph) -> None:
    assert classify_move(graph, "a", "a") == "unchanged"
    assert classify_move(graph, "r", "b") == "fast_forward"
    assert classify_move(graph, "b", "a") == "rewind"
    assert classify_move(graph, "b", "c") == "diverged"
    with pytest.raises(NotFound):
        classify_move(graph, "a", "nope")


def test_create_advance_and_query(graph: VersionGraph) -> None:
    table = BranchTable.initial("r")
    assert table.heads() == ((DEFAULT_BRANCH, "r"),)
    table = table.create("side", "r", graph).advance("side", "c", graph, expected_head="r")
    table = table.advance("main", "b", graph)
    assert table.heads() == (("main", "b"), ("side", "c"))
    assert dict(table) == {"main": "b", "side": "c"}
    assert table.branches_at("c") == ("side",)
    assert table.advance("main", "b", graph) is table  # unchanged


def test_tables_are_immutable(graph: VersionGraph) -> None:
    table = BranchTable.initial("r")
    table.create("side", "a", graph)
    table.advance("main", "a", graph)
    assert table.heads() == (("main", "r"),)


def test_head_moves_are_checked(graph: VersionGraph) -> None:
    table = BranchTable.initial("r").advance("main", "b", graph)
    with pytest.raises(Conflict) as stale:
        table.advance("main", "b", graph, expected_head="a")
    assert stale.value.detail["head"] == "b"
    for target, move in (("a", "rewind"), ("c", "diverged")):
        with pytest.raises(Conflict) as refused:
            table.advance("main", target, graph)
        assert refused.value.detail["move"] == move
    with pytest.raises(NotFound):
        table.advance("nope", "b", graph)
    with pytest.raises(NotFound):
        table.advance("main", "missing", graph)


def test_create_and_delete_rules(graph: VersionGraph) -> None:
    table = BranchTable.initial("r").create("side", "a", graph)
    with pytest.raises(Conflict):
        table.create("side", "b", graph)
    with pytest.raises(NotFound):
        table.create("other", "missing", graph)
    with pytest.raises(InvalidInput):
        table.create("Bad.Name", "a", graph)
    with pytest.raises(InvalidInput):
        table.delete(DEFAULT_BRANCH)
    with pytest.raises(Conflict):
        table.delete("side", expected_head="r")
    assert table.delete("side", expected_head="a").heads() == (("main", "r"),)
    with pytest.raises(NotFound):
        table.delete("side").delete("side")
