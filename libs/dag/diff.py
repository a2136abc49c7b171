"""Line diffs between two texts: typed edits, grouped hunks and the unified-diff rendering.

Lines keep their ``\\n`` (only ``\\n`` separates lines, as in git), so joining lines gives the
text back exactly and a missing final newline is a visible change. The edit script is a minimal
one (Myers) for texts that differ by up to :data:`~libs.dag._myers.MAX_EDIT_COST` lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from libs.dag._myers import common_runs
from libs.events.errors import InvalidInput

__all__ = [
    "DEFAULT_CONTEXT",
    "DiffHunk",
    "DiffLine",
    "Edit",
    "TextDiff",
    "diff_texts",
    "line_edits",
    "split_lines",
    "unified_diff",
]

DEFAULT_CONTEXT: Final = 3
"""Unchanged lines shown around each change, as in ``diff -u``."""

_NO_NEWLINE: Final = "\\ No newline at end of file\n"

EditTag = Literal["equal", "replace", "delete", "insert"]
LineKind = Literal["context", "delete", "insert"]
_PREFIX: Final[dict[str, str]] = {"context": " ", "delete": "-", "insert": "+"}


class Edit(msgspec.Struct, frozen=True):
    """One step of an edit script: ``a[a_start:a_end]`` becomes ``b[b_start:b_end]`` (0-based)."""

    tag: EditTag
    a_start: int
    a_end: int
    b_start: int
    b_end: int


class DiffLine(msgspec.Struct, frozen=True):
    """One line of a hunk; ``text`` keeps its newline (absent only on a text's last line)."""

    kind: LineKind
    text: str


class DiffHunk(msgspec.Struct, frozen=True):
    """A run of changes with context. Starts are 0-based line indexes into the old/new text."""

    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: tuple[DiffLine, ...]

    @property
    def header(self) -> str:
        """The ``@@ -l,s +l,s @@`` line (1-based; an empty range names the line before it)."""
        return (
            f"@@ -{_range(self.old_start, self.old_count)}"
            f" +{_range(self.new_start, self.new_count)} @@"
        )


class TextDiff(msgspec.Struct, frozen=True):
    """The diff of two texts: hunks plus line counts; ``identical`` when there are no hunks."""

    hunks: tuple[DiffHunk, ...]
    added: int
    removed: int

    @property
    def identical(self) -> bool:
        """True when the two texts are equal."""
        return not self.hunks

    def unified(self, old_label: str = "a", new_label: str = "b") -> str:
        """Render as a unified diff (empty string for identical texts)."""
        if not self.hunks:
            return ""
        out = [f"--- {old_label}\n", f"+++ {new_label}\n"]
        for hunk in self.hunks:
            out.append(hunk.header + "\n")
            for line in hunk.lines:
                out.append(_PREFIX[line.kind] + line.text)
                if not line.text.endswith("\n"):
                    out.append("\n" + _NO_NEWLINE)
        return "".join(out)


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` keeping it; ``"".join(split_lines(t)) == t`` for every text."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def line_edits(a: Sequence[str], b: Sequence[str]) -> list[Edit]:
    """The edit script turning lines ``a`` into lines ``b``, covering both fully, in order.

    ``equal`` and change edits alternate: two changes always have an ``equal`` edit between them.
    """
    edits: list[Edit] = []
    i = j = 0
    for a_start, b_start, size in [*common_runs(a, b), (len(a), len(b), 0)]:
        if i < a_start or j < b_start:
            tag: EditTag = (
                "replace" if i < a_start and j < b_start else "delete" if i < a_start else "insert"
            )
            edits.append(Edit(tag, i, a_start, j, b_start))
        if size:
            edits.append(Edit("equal", a_start, a_start + size, b_start, b_start + size))
        i, j = a_start + size, b_start + size
    return edits


def diff_texts(old: str, new: str, *, context: int = DEFAULT_CONTEXT) -> TextDiff:
    """Diff two texts line by line into hunks with ``context`` unchanged lines around changes."""
    if context < 0:
        raise InvalidInput("context must be >= 0", field="context", value=context)
    a, b = split_lines(old), split_lines(new)
    changes = [edit for edit in line_edits(a, b) if edit.tag != "equal"]
    groups: list[list[Edit]] = []
    for edit in changes:
        # Changes whose separating context would overlap share one hunk, as diff -u does.
        if groups and edit.a_start - groups[-1][-1].a_end <= 2 * context:
            groups[-1].append(edit)
        else:
            groups.append([edit])
    hunks = tuple(_hunk(a, b, group, context) for group in groups)
    added = sum(edit.b_end - edit.b_start for edit in changes)
    removed = sum(edit.a_end - edit.a_start for edit in changes)
    return TextDiff(hunks=hunks, added=added, removed=removed)


def unified_diff(
    old: str,
    new: str,
    *,
    old_label: str = "a",
    new_label: str = "b",
    context: int = DEFAULT_CONTEXT,
) -> str:
    """The unified diff of two texts (empty string when they are equal)."""
    return diff_texts(old, new, context=context).unified(old_label, new_label)


def _hunk(a: list[str], b: list[str], group: list[Edit], context: int) -> DiffHunk:
    first, last = group[0], group[-1]
    a_lo = max(0, first.a_start - context)
    a_hi = min(len(a), last.a_end + context)
    b_lo = first.b_start - (first.a_start - a_lo)
    b_hi = last.b_end + (a_hi - last.a_end)
    lines: list[DiffLine] = []
    pos = a_lo
    for edit in group:
        lines.extend(DiffLine("context", text) for text in a[pos : edit.a_start])
        lines.extend(DiffLine("delete", text) for text in a[edit.a_start : edit.a_end])
        lines.extend(DiffLine("insert", text) for text in b[edit.b_start : edit.b_end])
        pos = edit.a_end
    lines.extend(DiffLine("context", text) for text in a[pos:a_hi])
    return DiffHunk(a_lo, a_hi - a_lo, b_lo, b_hi - b_lo, tuple(lines))


def _range(start: int, count: int) -> str:
    if count == 1:
        return str(start + 1)
    # An empty range is named by the line before it, which is the 0-based start itself.
    return f"{start + 1 if count else start},{count}"
