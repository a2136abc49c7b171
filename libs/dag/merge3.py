"""Merging the contents of two or more heads: ``ours``, ``theirs`` or a line-based three-way merge.

The three-way merge diffs the common ancestor (``base``) against each side and takes every change
that only one side made. Changes of the two sides whose base ranges overlap or touch (adjacent
lines, or insertions at the same place) conflict unless both sides made the identical change; a
conflicting merge answers with the hunks and no text, so nothing is ever silently dropped.
Changes separated by at least one unchanged base line always merge cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, get_args

import msgspec

from libs.dag.diff import Edit, line_edits, split_lines
from libs.events.errors import InvalidInput

__all__ = [
    "STRATEGIES",
    "ConflictHunk",
    "LineRange",
    "MergeResult",
    "Strategy",
    "merge",
    "merge3",
    "merge_many",
    "validate_strategy",
]

Strategy = Literal["ours", "theirs", "three_way"]
"""``ours``/``theirs`` take one side's content whole; ``three_way`` merges line changes."""

STRATEGIES: Final[tuple[Strategy, ...]] = get_args(Strategy)


class LineRange(msgspec.Struct, frozen=True):
    """Lines ``[start, end)`` of a text, 0-based (``start == end`` is a position between lines)."""

    start: int
    end: int


class ConflictHunk(msgspec.Struct, frozen=True, kw_only=True):
    """Both sides changed the same base region differently.

    ``head`` is the index (in the merged heads) of the side called ``theirs``; ``ours`` is the
    merge of all heads before it (for two heads: ``head == 1`` and ``ours`` is head 0).
    """

    base: LineRange
    ours: LineRange
    theirs: LineRange
    base_text: str
    ours_text: str
    theirs_text: str
    head: int = 1


class MergeResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a merge: the merged ``text`` when ``clean``, else the ``conflicts``.

    ``marked`` is the base-aware (diff3-style) rendering of a conflicting merge with
    ``<<<<<<<``/``|||||||``/``=======``/``>>>>>>>`` markers, for people and agents to resolve;
    it is never a version's content by itself.
    """

    strategy: Strategy
    clean: bool
    text: str | None
    conflicts: tuple[ConflictHunk, ...] = ()
    marked: str | None = None


def validate_strategy(strategy: object) -> Strategy:
    """Return ``strategy`` if it names a merge strategy, else raise :class:`InvalidInput`."""
    for known in STRATEGIES:
        if strategy == known:
            return known
    raise InvalidInput(
        f"strategy must be one of {', '.join(STRATEGIES)}", field="strategy", value=repr(strategy)
    )


def merge(strategy: Strategy | str, base: str, ours: str, theirs: str) -> MergeResult:
    """Merge two sides with a strategy (``base`` is only read by ``three_way``)."""
    return merge_many(strategy, base, (ours, theirs))


def merge_many(strategy: Strategy | str, base: str, heads: Sequence[str]) -> MergeResult:
    """Merge two or more heads; ``base`` must be a common ancestor of all of them.

    ``ours`` takes the first head, ``theirs`` the last. ``three_way`` folds left: head 0 merged
    with head 1, the result with head 2, and so on, stopping at the first step with conflicts.
    """
    chosen = validate_strategy(strategy)
    if len(heads) < 2:
        raise InvalidInput("a merge needs at least two heads", field="heads", value=len(heads))
    if chosen == "ours":
        return MergeResult(strategy=chosen, clean=True, text=heads[0])
    if chosen == "theirs":
        return MergeResult(strategy=chosen, clean=True, text=heads[-1])
    result = merge3(base, heads[0], heads[1])
    for index in range(2, len(heads)):
        if result.text is None:
            break
        result = merge3(base, result.text, heads[index], head=index)
    return result


class _Change(msgspec.Struct, frozen=True):
    side: int  # 0 = ours, 1 = theirs
    edit: Edit


def merge3(base: str, ours: str, theirs: str, *, head: int = 1) -> MergeResult:
    """Three-way line merge of ``ours`` and ``theirs`` from their common ancestor ``base``.

    ``head`` only labels conflicts (see :class:`ConflictHunk`).
    """
    lines = (split_lines(base), split_lines(ours), split_lines(theirs))
    changes = sorted(
        (
            _Change(side, edit)
            for side in (0, 1)
            for edit in line_edits(lines[0], lines[side + 1])
            if edit.tag != "equal"
        ),
        key=lambda change: (change.edit.a_start, change.edit.a_end, change.side),
    )
    merged: list[str] = []
    marked: list[str] = []
    conflicts: list[ConflictHunk] = []
    shift = [0, 0]  # lines each side gained before the current base position
    pos = 0
    for group in _overlapping(changes):
        lo = min(change.edit.a_start for change in group)
        hi = max(change.edit.a_end for change in group)
        unchanged = lines[0][pos:lo]
        merged += unchanged
        marked += unchanged
        spans = [_side_span(group, side, lo, hi, shift[side]) for side in (0, 1)]
        ours_part = lines[1][spans[0].start : spans[0].end]
        theirs_part = lines[2][spans[1].start : spans[1].end]
        for side in (0, 1):
            shift[side] = spans[side].end - hi
        pos = hi
        if ours_part == theirs_part or not any(change.side == 1 for change in group):
            merged += ours_part
            marked += ours_part
        elif not any(change.side == 0 for change in group):
            merged += theirs_part
            marked += theirs_part
        else:
            base_part = lines[0][lo:hi]
            conflicts.append(
                ConflictHunk(
                    base=LineRange(lo, hi),
                    ours=spans[0],
                    theirs=spans[1],
                    base_text="".join(base_part),
                    ours_text="".join(ours_part),
                    theirs_text="".join(theirs_part),
                    head=head,
                )
            )
            marked += _markers(base_part, ours_part, theirs_part)
    merged += lines[0][pos:]
    marked += lines[0][pos:]
    if conflicts:
        return MergeResult(
            strategy="three_way",
            clean=False,
            text=None,
            conflicts=tuple(conflicts),
            marked="".join(marked),
        )
    return MergeResult(strategy="three_way", clean=True, text="".join(merged))


def _overlapping(changes: list[_Change]) -> list[list[_Change]]:
    """Group changes (sorted by base start) whose base ranges overlap or touch, transitively."""
    groups: list[list[_Change]] = []
    end = -1
    for change in changes:
        # Closed comparison: a change starting where the group ends touches it (adjacent lines,
        # or an insertion at the group's edge), which is ambiguous to order, so it conflicts.
        if groups and change.edit.a_start <= end:
            groups[-1].append(change)
            end = max(end, change.edit.a_end)
        else:
            groups.append([change])
            end = change.edit.a_end
    return groups


def _side_span(group: list[_Change], side: int, lo: int, hi: int, shift: int) -> LineRange:
    """The lines of one side that stand for base lines ``[lo, hi)``."""
    own = [change.edit for change in group if change.side == side]
    if not own:
        return LineRange(lo + shift, hi + shift)
    # Outside its own edits the side equals the base, so the span extends by the same amounts.
    return LineRange(own[0].b_start - (own[0].a_start - lo), own[-1].b_end + (hi - own[-1].a_end))


def _markers(base: list[str], ours: list[str], theirs: list[str]) -> list[str]:
    out = ["<<<<<<< ours\n", *_terminated(ours), "||||||| base\n", *_terminated(base)]
    out += ["=======\n", *_terminated(theirs), ">>>>>>> theirs\n"]
    return out


def _terminated(lines: list[str]) -> list[str]:
    """Lines with a newline added to a last line lacking one, so a marker starts its own line."""
    if lines and not lines[-1].endswith("\n"):
        return [*lines[:-1], lines[-1] + "\n"]
    return lines
