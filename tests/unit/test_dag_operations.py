"""History operations end to end on the pure core: ids, a replayed diamond, merges, reverts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.dag import (
    BranchTable,
    VersionGraph,
    VersionNode,
    VersionSpec,
    diff_texts,
    make_version,
    plan_merge,
    plan_revert,
    plan_revise,
)
from libs.events.errors import InvalidInput, NotFound
from libs.events.ids import content_hash
from libs.events.model import MetadataValue
from libs.events.versions import version_id

MEMORY = "0190a8b2-0000-7000-8000-000000000001"

metadata_st = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    max_size=4,
)
ids_st = st.lists(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32), max_size=4)


@given(st.text(), metadata_st, ids_st, st.randoms())
def test_version_id_is_deterministic_and_parent_order_free(
    content: str, metadata: dict[str, MetadataValue], parents: list[str], rnd: random.Random
) -> None:
    digest = content_hash(content)
    shuffled_parents = rnd.sample(parents, len(parents))
    shuffled_meta = dict(rnd.sample(list(metadata.items()), len(metadata)))
    first = version_id(MEMORY, digest, metadata, parents)
    assert first == version_id(MEMORY, digest, shuffled_meta, shuffled_parents)
    assert len(first) == 32 and int(first, 16) >= 0
    spec = make_version(MEMORY, content, shuffled_parents, shuffled_meta)
    assert spec.version_id == first and spec.parent_ids == tuple(sorted(parents))


@given(st.text(), metadata_st, ids_st, ids_st)
def test_version_id_changes_with_parents_content_and_memory(
    content: str, metadata: dict[str, MetadataValue], parents: list[str], others: list[str]
) -> None:
    digest = content_hash(content)
    base = version_id(MEMORY, digest, metadata, parents)
    if sorted(parents) != sorted(others):
        assert version_id(MEMORY, digest, metadata, others) != base
    assert version_id(MEMORY, content_hash(content + "!"), metadata, parents) != base
    assert version_id(MEMORY[:-1] + "2", digest, metadata, parents) != base


@dataclass
class History:
    """A memory's history replayed through the pure operations, as a command handler would."""

    graph: VersionGraph = field(default_factory=VersionGraph)
    contents: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    branches: BranchTable = field(default_factory=BranchTable)

    def record(self, spec: VersionSpec) -> str:
        self.seq += 1
        self.graph.add(VersionNode(spec.version_id, spec.parent_ids, self.seq))
        self.contents[spec.version_id] = spec.content
        return spec.version_id

    def create(self, content: str) -> str:
        root = self.record(make_version(MEMORY, content, ()))
        self.branches = BranchTable.initial(root)
        return root

    def commit(self, branch: str, content: str) -> str:
        head = self.branches.head(branch)
        new = self.record(plan_revise(MEMORY, self.graph, head, content))
        self.branches = self.branches.advance(branch, new, self.graph, expected_head=head)
        return new


def diamond(merge_order: tuple[str, str] = ("main", "feature")) -> tuple[History, list[str]]:
    history = History()
    root = history.create("# notes\nowner: ann\nstatus: draft\n\nbody\n")
    history.branches = history.branches.create("feature", root, history.graph)
    left = history.commit("main", "# notes\nowner: bob\nstatus: draft\n\nbody\n")
    right = history.commit("feature", "# notes\nowner: ann\nstatus: draft\n\nbody\nmore\n")
    heads = [history.branches.head(name) for name in merge_order]
    plan = plan_merge(MEMORY, history.graph, heads, "three_way", history.contents.__getitem__)
    assert plan.version is not None and plan.base_id == root
    merged = history.record(plan.version)
    history.branches = history.branches.advance("main", merged, history.graph)
    return history, [root, left, right, merged]


def test_diamond_merged_and_replayed_gives_identical_ids() -> None:
    first, ids = diamond()
    again, replayed = diamond()
    assert replayed == ids and len(set(ids)) == 4
    # Merging the heads in the other order names the same version (sorted parents, same text).
    assert diamond(("feature", "main"))[1] == ids
    root, left, right, merged = ids
    assert first.contents[merged] == "# notes\nowner: bob\nstatus: draft\n\nbody\nmore\n"
    assert first.graph.node(merged).parent_ids == tuple(sorted((left, right)))
    # Rebuilding the graph from its records, in any order, answers the same.
    records = list(first.graph)
    random.Random(7).shuffle(records)
    rebuilt = VersionGraph.from_nodes(records)
    assert rebuilt.log(merged) == first.graph.log(merged) == again.graph.log(merged)
    assert [n.version_id for n in rebuilt.log(merged).entries] == [merged, right, left, root]
    assert rebuilt.common_ancestor(left, right) == root


def test_merge_records_strategy_heads_and_parents() -> None:
    history, (_, left, right, _) = diamond()
    plan = plan_merge(MEMORY, history.graph, [right, left], "ours", history.contents.__getitem__)
    assert plan.strategy == "ours" and plan.heads == (right, left)
    assert plan.version is not None
    assert plan.version.parent_ids == tuple(sorted((left, right)))
    assert plan.version.content == history.contents[right]
    theirs = plan_merge(
        MEMORY, history.graph, [right, left], "theirs", history.contents.__getitem__
    )
    assert theirs.version is not None and theirs.version.content == history.contents[left]
    assert theirs.version.version_id != plan.version.version_id


def test_conflicting_three_way_merge_changes_nothing() -> None:
    history = History()
    root = history.create("a\nstatus: draft\nc\n")
    history.branches = history.branches.create("feature", root, history.graph)
    left = history.commit("main", "a\nstatus: review\nc\n")
    right = history.commit("feature", "a\nstatus: final\nc\n")
    before = (len(history.graph), history.branches.heads())
    plan = plan_merge(
        MEMORY, history.graph, [left, right], "three_way", history.contents.__getitem__
    )
    assert plan.version is None and not plan.result.clean
    [hunk] = plan.result.conflicts
    assert (hunk.base_text, hunk.ours_text, hunk.theirs_text) == (
        "status: draft\n",
        "status: review\n",
        "status: final\n",
    )
    assert (len(history.graph), history.branches.heads()) == before


def test_three_head_merge_uses_the_base_of_all_heads() -> None:
    history = History()
    root = history.create("1\n2\n3\n4\n5\n")
    for name in ("b", "c"):
        history.branches = history.branches.create(name, root, history.graph)
    heads = [
        history.commit("main", "one\n2\n3\n4\n5\n"),
        history.commit("b", "1\n2\nthree\n4\n5\n"),
        history.commit("c", "1\n2\n3\n4\nfive\n"),
    ]
    plan = plan_merge(MEMORY, history.graph, heads, "three_way", history.contents.__getitem__)
    assert plan.version is not None and plan.base_id == root
    assert plan.version.content == "one\n2\nthree\n4\nfive\n"
    assert len(plan.version.parent_ids) == 3


def test_merge_preconditions() -> None:
    history, (root, left, right, merged) = diamond()
    get = history.contents.__getitem__
    for heads in ([left], [left, left], [root, left], [merged, left]):
        with pytest.raises(InvalidInput):
            plan_merge(MEMORY, history.graph, heads, "three_way", get)
    with pytest.raises(InvalidInput):
        plan_merge(MEMORY, history.graph, [left, right], "octopus", get)
    with pytest.raises(NotFound):
        plan_merge(MEMORY, history.graph, [left, "f" * 32], "ours", get)


def test_revert_of_a_revert_restores_content() -> None:
    history = History()
    v1 = history.create("fact: the sky is green\n")
    v2 = history.commit("main", "fact: the sky is blue\n")
    revert = plan_revert(MEMORY, history.graph, v2, v1, history.contents.__getitem__)
    v3 = history.record(revert)
    assert revert.parent_ids == (v2,) and history.contents[v3] == history.contents[v1]
    again = plan_revert(MEMORY, history.graph, v3, v2, history.contents.__getitem__)
    v4 = history.record(again)
    assert history.contents[v4] == history.contents[v2]
    assert len({v1, v2, v3, v4}) == 4  # same content, distinct versions: history is kept
    assert [n.version_id for n in history.graph.log(v4).entries] == [v4, v3, v2, v1]
    assert diff_texts(history.contents[v2], history.contents[v4]).identical


def test_revert_preconditions() -> None:
    history = History()
    v1 = history.create("a\n")
    v2 = history.commit("main", "b\n")
    history.branches = history.branches.create("side", v1, history.graph)
    side = history.commit("side", "c\n")
    get = history.contents.__getitem__
    for head, target in ((v2, v2), (v2, side), (v1, v2)):
        with pytest.raises(InvalidInput):
            plan_revert(MEMORY, history.graph, head, target, get)
    with pytest.raises(NotFound):
        plan_revert(MEMORY, history.graph, v2, "0" * 32, get)


def test_same_commit_on_two_branches_is_one_version() -> None:
    history = History()
    root = history.create("a\n")
    history.branches = history.branches.create("side", root, history.graph)
    on_main = history.commit("main", "b\n")
    on_side = history.commit("side", "b\n")
    assert on_main == on_side and len(history.graph) == 2
    assert history.branches.branches_at(on_main) == ("main", "side")
