"""Merges: ours/theirs, three-way properties (identity, disjoint edits clean, overlap conflicts,
symmetry) and the shape of conflict answers."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from libs.dag import (
    STRATEGIES,
    LineRange,
    merge,
    merge3,
    merge_many,
    split_lines,
    validate_strategy,
)
from libs.events.errors import InvalidInput

texts_st = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "\n", "z"]), max_size=10).map("".join)

Region = tuple[int, int, str, int]  # base start, base end, side, number of new lines


def base_lines(n: int) -> list[str]:
    return [f"base {i}\n" for i in range(n)]


def apply_regions(base: list[str], regions: list[Region], sides: set[str]) -> str:
    """Replace each chosen region by fresh lines named after its side (regions sorted, disjoint)."""
    out: list[str] = []
    pos = 0
    for index, (start, end, side, count) in enumerate(regions):
        if side not in sides:
            continue
        out += base[pos:start]
        out += [f"{side} {index}.{k}\n" for k in range(count)]
        pos = end
    out += base[pos:]
    return "".join(out)


@st.composite
def disjoint_edits(draw: st.DrawFn) -> tuple[list[str], list[Region]]:
    """A base of unique lines and edits (replace, delete, insert) split between two sides,
    every two edits separated by at least one unchanged base line."""
    n = draw(st.integers(min_value=0, max_value=25))
    regions: list[Region] = []
    pos = 0
    while len(regions) < 6:
        start = pos + draw(st.integers(min_value=0 if not regions else 1, max_value=4))
        if start > n:
            break
        end = min(n, start + draw(st.integers(min_value=0, max_value=3)))
        count = draw(st.integers(min_value=0 if end > start else 1, max_value=3))
        regions.append((start, end, draw(st.sampled_from(["ours", "theirs"])), count))
        pos = end
    return base_lines(n), regions


@given(texts_st, texts_st)
def test_one_sided_changes_merge_to_that_side(x: str, y: str) -> None:
    for result in (merge3(x, x, y), merge3(x, y, x), merge3(x, y, y)):
        assert result.clean and result.text == y and not result.conflicts
        assert result.marked is None
    assert merge("three_way", x, x, y).text == y


@settings(max_examples=300)
@given(disjoint_edits())
def test_disjoint_edits_merge_cleanly_into_both(case: tuple[list[str], list[Region]]) -> None:
    base, regions = case
    text = "".join(base)
    ours = apply_regions(base, regions, {"ours"})
    theirs = apply_regions(base, regions, {"theirs"})
    expected = apply_regions(base, regions, {"ours", "theirs"})
    for result in (merge3(text, ours, theirs), merge3(text, theirs, ours)):
        assert result.clean, result.conflicts
        assert result.text == expected


@settings(max_examples=300)
@given(st.data())
def test_overlapping_or_touching_edits_conflict(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=12))
    base = base_lines(n)

    def region(side: str) -> Region:
        start = data.draw(st.integers(min_value=0, max_value=n))
        end = data.draw(st.integers(min_value=start, max_value=n))
        count = data.draw(st.integers(min_value=0 if end > start else 1, max_value=2))
        return (start, end, side, count)

    ours_region, theirs_region = region("ours"), region("theirs")
    # Closed intervals intersect: overlapping, adjacent, or insertions at the same place.
    assume(ours_region[0] <= theirs_region[1] and theirs_region[0] <= ours_region[1])
    identical_deletes = ours_region[:2] == theirs_region[:2] and ours_region[3] == 0
    identical_deletes = identical_deletes and theirs_region[3] == 0
    assume(not identical_deletes)
    ours = apply_regions(base, [ours_region], {"ours"})
    theirs = apply_regions(base, [theirs_region], {"theirs"})
    result = merge3("".join(base), ours, theirs)
    assert not result.clean and result.text is None and len(result.conflicts) == 1
    hunk = result.conflicts[0]
    assert hunk.base == LineRange(
        min(ours_region[0], theirs_region[0]), max(ours_region[1], theirs_region[1])
    )


@settings(max_examples=300)
@given(texts_st, texts_st, texts_st)
def test_merge_is_symmetric(base: str, ours: str, theirs: str) -> None:
    forward, backward = merge3(base, ours, theirs), merge3(base, theirs, ours)
    assert forward.clean == backward.clean == (not forward.conflicts)
    assert forward.text == backward.text
    assert [
        (h.base, h.ours, h.theirs, h.base_text, h.ours_text, h.theirs_text)
        for h in forward.conflicts
    ] == [
        (h.base, h.theirs, h.ours, h.base_text, h.theirs_text, h.ours_text)
        for h in backward.conflicts
    ]


@settings(max_examples=300)
@given(texts_st, texts_st, texts_st)
def test_conflict_hunks_describe_the_inputs(base: str, ours: str, theirs: str) -> None:
    result = merge3(base, ours, theirs)
    for hunk in result.conflicts:
        for text, span, quoted in (
            (base, hunk.base, hunk.base_text),
            (ours, hunk.ours, hunk.ours_text),
            (theirs, hunk.theirs, hunk.theirs_text),
        ):
            assert "".join(split_lines(text)[span.start : span.end]) == quoted
        assert hunk.ours_text != hunk.theirs_text
    if result.conflicts:
        assert result.marked is not None
        assert result.marked.count("<<<<<<< ours\n") == len(result.conflicts)


def test_conflicting_three_way_merge_answers_hunks_and_no_text() -> None:
    base = "title\nstatus: draft\nowner: ann\nbody\n"
    ours = "title\nstatus: review\nowner: ann\nbody\n"
    theirs = "title\nstatus: final\nowner: ann\nbody\nfooter\n"
    result = merge3(base, ours, theirs)
    assert not result.clean and result.text is None
    [hunk] = result.conflicts
    assert hunk.base == LineRange(1, 2) and hunk.ours == LineRange(1, 2)
    assert (hunk.base_text, hunk.ours_text, hunk.theirs_text) == (
        "status: draft\n",
        "status: review\n",
        "status: final\n",
    )
    assert result.marked == (
        "title\n<<<<<<< ours\nstatus: review\n||||||| base\nstatus: draft\n=======\n"
        "status: final\n>>>>>>> theirs\nowner: ann\nbody\nfooter\n"
    )


def test_identical_changes_on_both_sides_are_clean() -> None:
    result = merge3("a\nb\nc\n", "a\nB\nc\n", "a\nB\nc\n")
    assert result.clean and result.text == "a\nB\nc\n"


def test_adjacent_line_changes_conflict_but_one_line_apart_merge() -> None:
    base = "1\n2\n3\n4\n"
    assert not merge3(base, "1\nX\n3\n4\n", "1\n2\nY\n4\n").clean
    assert merge3(base, "X\n2\n3\n4\n", "1\n2\nY\n4\n").text == "X\n2\nY\n4\n"


def test_conflict_marks_sides_without_final_newline() -> None:
    result = merge3("a", "b", "c")
    assert result.marked == "<<<<<<< ours\nb\n||||||| base\na\n=======\nc\n>>>>>>> theirs\n"


@given(texts_st, texts_st, texts_st)
def test_ours_and_theirs_take_one_side_whole(base: str, ours: str, theirs: str) -> None:
    assert merge("ours", base, ours, theirs).text == ours
    assert merge("theirs", base, ours, theirs).text == theirs
    assert merge("ours", base, ours, theirs).strategy == "ours"
    assert merge("theirs", base, ours, theirs).clean


def test_merge_many_folds_three_heads() -> None:
    base = "a\nb\nc\nd\ne\n"
    heads = ["A\nb\nc\nd\ne\n", "a\nb\nC\nd\ne\n", "a\nb\nc\nd\nE\n"]
    assert merge_many("three_way", base, heads).text == "A\nb\nC\nd\nE\n"
    assert merge_many("ours", base, heads).text == heads[0]
    assert merge_many("theirs", base, heads).text == heads[2]
    conflicting = merge_many("three_way", base, [*heads, "a\nb\nc\nd\nX\n"])
    assert not conflicting.clean and conflicting.conflicts[0].head == 3
    assert conflicting.conflicts[0].ours_text == "E\n"


def test_strategy_and_head_count_are_validated() -> None:
    assert STRATEGIES == ("ours", "theirs", "three_way")
    assert validate_strategy("theirs") == "theirs"
    with pytest.raises(InvalidInput):
        merge("recursive", "", "a", "b")
    with pytest.raises(InvalidInput):
        merge_many("ours", "", ["only one"])
