"""Grouping planned events into set-wise runs: order per memory is never changed."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from libs.readmodel.projections import Statement
from services.projector.runs import Planned, independent_runs

_ids = itertools.count()


def planned(event_type: str, memory_id: str, queries: tuple[str, ...] = ("a", "b")) -> Planned:
    return Planned(f"e-{next(_ids)}", event_type, memory_id, [Statement(q) for q in queries])


def test_creations_of_distinct_memories_form_one_run() -> None:
    items = [planned("MemoryCreated", f"m{i}") for i in range(5)]
    assert list(independent_runs(items)) == [items]


def test_a_second_event_on_a_memory_starts_a_new_run() -> None:
    a1, b, a2 = planned("MemoryTagged", "a"), planned("MemoryTagged", "b"), planned(
        "MemoryTagged", "a")
    assert list(independent_runs([a1, b, a2])) == [[a1, b], [a2]]


def test_another_type_or_other_queries_start_a_new_run() -> None:
    c = planned("MemoryCreated", "a")
    t = planned("MemoryTagged", "b")
    other_branch = planned("MemoryCommitted", "c", ("x",))
    main_branch = planned("MemoryCommitted", "d", ("x", "y"))
    assert list(independent_runs([c, t, other_branch, main_branch])) == [
        [c], [t], [other_branch], [main_branch]]


@given(st.lists(st.tuples(st.sampled_from(["T1", "T2"]), st.sampled_from("abcd")), max_size=30))
def test_runs_keep_every_event_and_each_memorys_order(events: list[tuple[str, str]]) -> None:
    items = [planned(t, m) for t, m in events]
    runs = list(independent_runs(items))
    assert [i for run in runs for i in run] == items  # concatenation is the stream order
    for run in runs:
        assert len({i.memory_id for i in run}) == len(run)
        assert len({i.shape for i in run}) == 1
