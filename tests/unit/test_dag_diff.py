"""Line diffs: exact edit scripts (minimal vs a brute-force LCS), hunks and unified rendering."""

from __future__ import annotations

import difflib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.dag import DiffHunk, diff_texts, line_edits, split_lines, unified_diff
from libs.dag._myers import common_runs
from libs.events.errors import InvalidInput

# Few distinct lines make repeated lines (the hard case for diffs) common.
lines_st = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "\n", "d"]), max_size=14)
texts_st = lines_st.map("".join)


def lcs_length(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            table[i][j] = (
                table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
            )
    return table[0][0]


def apply_hunks(old: str, hunks: tuple[DiffHunk, ...]) -> str:
    """Apply hunks the way patch does: check context and deletions, splice insertions."""
    a = split_lines(old)
    out: list[str] = []
    pos = 0
    for hunk in hunks:
        out += a[pos : hunk.old_start]
        cursor = hunk.old_start
        for line in hunk.lines:
            if line.kind == "insert":
                out.append(line.text)
                continue
            assert a[cursor] == line.text
            if line.kind == "context":
                out.append(line.text)
            cursor += 1
        assert cursor == hunk.old_start + hunk.old_count
        pos = cursor
    out += a[pos:]
    return "".join(out)


@given(st.text(alphabet="ab\n\r", max_size=30))
def test_split_lines_round_trips_and_splits_only_on_newline(text: str) -> None:
    lines = split_lines(text)
    assert "".join(lines) == text
    assert all(line.endswith("\n") for line in lines[:-1])
    assert all("\n" not in line[:-1] for line in lines)


def test_split_lines_edges() -> None:
    assert split_lines("") == []
    assert split_lines("\n") == ["\n"]
    assert split_lines("a") == ["a"]
    assert split_lines("a\r\nb") == ["a\r\n", "b"]


@settings(max_examples=300)
@given(lines_st, lines_st)
def test_edit_script_rebuilds_b_and_is_minimal(a: list[str], b: list[str]) -> None:
    edits = line_edits(a, b)
    rebuilt: list[str] = []
    a_pos = b_pos = 0
    for edit in edits:
        assert (edit.a_start, edit.b_start) == (a_pos, b_pos)  # contiguous, full cover
        if edit.tag == "equal":
            assert a[edit.a_start : edit.a_end] == b[edit.b_start : edit.b_end]
        else:
            assert (edit.tag == "insert") == (edit.a_start == edit.a_end)
            assert (edit.tag == "delete") == (edit.b_start == edit.b_end)
        rebuilt += b[edit.b_start : edit.b_end]
        a_pos, b_pos = edit.a_end, edit.b_end
    assert (a_pos, b_pos) == (len(a), len(b))
    assert rebuilt == b
    # equal and change edits alternate (merge3 relies on it)
    tags = [edit.tag == "equal" for edit in edits]
    assert all(x != y for x, y in itertools.pairwise(tags))
    matched = sum(e.a_end - e.a_start for e in edits if e.tag == "equal")
    assert matched == lcs_length(a, b)


def test_over_cost_diff_degrades_to_one_valid_replace() -> None:
    a = [f"a{i}" for i in range(10)] + ["same"] + [f"x{i}" for i in range(10)]
    b = [f"b{i}" for i in range(10)] + ["same"] + [f"y{i}" for i in range(10)]
    assert common_runs(a, b) == [(10, 10, 1)]
    assert common_runs(a, b, max_cost=5) == []  # valid, not minimal
    assert common_runs(["p", *a, "s"], ["p", *b, "s"], max_cost=5) == [(0, 0, 1), (22, 22, 1)]


@settings(max_examples=300)
@given(texts_st, texts_st, st.integers(min_value=0, max_value=4))
def test_hunks_apply_like_a_patch(old: str, new: str, context: int) -> None:
    diff = diff_texts(old, new, context=context)
    assert apply_hunks(old, diff.hunks) == new
    assert diff.identical == (old == new)
    lines = [line for hunk in diff.hunks for line in hunk.lines]
    assert diff.added == sum(line.kind == "insert" for line in lines)
    assert diff.removed == sum(line.kind == "delete" for line in lines)
    for hunk in diff.hunks:
        assert hunk.old_count == sum(line.kind != "insert" for line in hunk.lines)
        assert hunk.new_count == sum(line.kind != "delete" for line in hunk.lines)


def test_unified_matches_gnu_format_on_an_unambiguous_change() -> None:
    old = "".join(f"line {i}\n" for i in range(1, 21))
    new = old.replace("line 3\n", "line three\n").replace("line 15\n", "")
    expected = "".join(difflib.unified_diff(split_lines(old), split_lines(new), "a", "b"))
    assert unified_diff(old, new) == expected
    assert diff_texts(old, new).hunks[0].header == "@@ -1,6 +1,6 @@"
    assert len(diff_texts(old, new).hunks) == 2
    assert len(diff_texts(old, new, context=6).hunks) == 1  # 11 equal lines <= 2 * 6


@pytest.mark.parametrize("gap", [5, 6, 7])
def test_hunks_join_when_context_would_meet_as_in_gnu_diff(gap: int) -> None:
    old = "".join(f"line {i}\n" for i in range(gap + 8))
    new = old.replace("line 2\n", "two\n").replace(f"line {gap + 3}\n", "other\n")
    expected = "".join(difflib.unified_diff(split_lines(old), split_lines(new), "a", "b"))
    assert unified_diff(old, new) == expected
    assert len(diff_texts(old, new).hunks) == (1 if gap <= 6 else 2)


def test_unified_insert_into_empty_and_missing_final_newline() -> None:
    assert unified_diff("", "x\n") == "--- a\n+++ b\n@@ -0,0 +1 @@\n+x\n"
    assert unified_diff("a\nb", "a\nb\n", old_label="v1", new_label="v2") == (
        "--- v1\n+++ v2\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
    )
    assert unified_diff("same\n", "same\n") == ""


def test_negative_context_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        diff_texts("a", "b", context=-1)
