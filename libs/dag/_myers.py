"""Myers' O((N+M)·D) shortest-edit-script algorithm over sequences of hashable items.

Private: :mod:`libs.dag.diff` is the public face. The answer is a list of common runs, which is
all a line diff needs (everything between two runs is a change).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Final

__all__ = ["MAX_EDIT_COST", "Run", "common_runs"]

MAX_EDIT_COST: Final = 1000
"""Most line edits searched for an exact (minimal) script after trimming common ends.

Myers keeps one frontier per edit step, so memory grows with the square of the edit count. Texts
that differ by more than this are answered with one replace of their differing middle: a valid,
non-minimal diff, which can only make a merge more conservative (more conflicts), never lossy.
"""

Run = tuple[int, int, int]
"""A common run ``(a_start, b_start, length)``: ``a[a_start:a_start+length]`` equals b's slice."""


def common_runs(
    a: Sequence[Hashable], b: Sequence[Hashable], max_cost: int = MAX_EDIT_COST
) -> list[Run]:
    """Maximal common runs of a longest common subsequence of ``a`` and ``b``, in order.

    Runs never touch on both sides at once (two runs always have a gap in ``a`` or in ``b``
    between them), so every gap is exactly one change.
    """
    interned: dict[Hashable, int] = {}
    xs = [interned.setdefault(item, len(interned)) for item in a]
    ys = [interned.setdefault(item, len(interned)) for item in b]
    n, m = len(xs), len(ys)
    prefix = 0
    while prefix < n and prefix < m and xs[prefix] == ys[prefix]:
        prefix += 1
    suffix = 0
    while suffix < n - prefix and suffix < m - prefix and xs[n - 1 - suffix] == ys[m - 1 - suffix]:
        suffix += 1
    core = _myers(xs[prefix : n - suffix], ys[prefix : m - suffix], max_cost)
    runs: list[Run] = []
    if prefix:
        runs.append((0, 0, prefix))
    runs.extend((i + prefix, j + prefix, size) for i, j, size in core or ())
    if suffix:
        runs.append((n - suffix, m - suffix, suffix))
    return _coalesce(runs)


def _coalesce(runs: list[Run]) -> list[Run]:
    """Join runs that continue each other on both sides (keeps the no-touching promise)."""
    out: list[Run] = []
    for i, j, size in runs:
        if out and out[-1][0] + out[-1][2] == i and out[-1][1] + out[-1][2] == j:
            pi, pj, psize = out[-1]
            out[-1] = (pi, pj, psize + size)
        elif size:
            out.append((i, j, size))
    return out


def _myers(a: list[int], b: list[int], max_cost: int) -> list[Run] | None:
    """Common runs of a minimal edit script, or ``None`` if it costs more than ``max_cost``."""
    n, m = len(a), len(b)
    if n == 0 or m == 0 or set(a).isdisjoint(b):
        # Nothing in common (e.g. a wholesale rewrite): one replace, without searching for it.
        return []
    max_d = min(n + m, max_cost)
    off = max_d + 1
    v = [0] * (2 * max_d + 3)
    trace: list[list[int]] = []  # trace[d][k + d]: furthest x on diagonal k after d edits
    for d in range(max_d + 1):
        for k in range(-d, d + 1, 2):
            # Step down (an insertion) from diagonal k+1 unless a deletion from k-1 reaches further.
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[off + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, n, m, d)
        trace.append(v[off - d : off + d + 1])
    return None


def _backtrack(trace: list[list[int]], n: int, m: int, cost: int) -> list[Run]:
    """Walk the recorded frontiers back from ``(n, m)``, collecting each step's diagonal snake."""
    runs: list[Run] = []
    x, y = n, m
    for d in range(cost, 0, -1):
        prev = trace[d - 1]
        k = x - y
        down = k == -d or (k != d and prev[k - 1 + d - 1] < prev[k + 1 + d - 1])
        prev_k = k + 1 if down else k - 1
        prev_x = prev[prev_k + d - 1]
        snake_x = prev_x if down else prev_x + 1
        if x > snake_x:
            runs.append((snake_x, snake_x - k, x - snake_x))
        x, y = prev_x, prev_x - prev_k
    if x > 0:
        runs.append((0, 0, x))
    runs.reverse()
    return runs
