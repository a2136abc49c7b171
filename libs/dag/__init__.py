"""The version DAG of memories, as pure logic (no I/O).

- :mod:`libs.dag.graph`: :class:`VersionGraph` (log, ancestry, common ancestors).
- :mod:`libs.dag.diff`: line diffs, hunks, unified rendering.
- :mod:`libs.dag.merge3`: ``ours`` / ``theirs`` / ``three_way`` merges.
- :mod:`libs.dag.branches`: branch names and head-move rules.
- :mod:`libs.dag.operations`: planning revise, merge and revert versions.

Import from here; the submodules are the implementation.
"""

from libs.dag.branches import (
    DEFAULT_BRANCH,
    BranchTable,
    HeadMove,
    classify_move,
    validate_branch,
)
from libs.dag.diff import (
    DiffHunk,
    DiffLine,
    Edit,
    TextDiff,
    diff_texts,
    line_edits,
    split_lines,
    unified_diff,
)
from libs.dag.graph import (
    DEFAULT_LOG_LIMIT,
    MAX_LOG_LIMIT,
    InvalidGraph,
    LogPage,
    VersionGraph,
    VersionNode,
)
from libs.dag.merge3 import (
    STRATEGIES,
    ConflictHunk,
    LineRange,
    MergeResult,
    Strategy,
    merge,
    merge3,
    merge_many,
    validate_strategy,
)
from libs.dag.operations import (
    ContentOf,
    MergePlan,
    VersionSpec,
    make_version,
    plan_merge,
    plan_revert,
    plan_revise,
)

__all__ = [
    "DEFAULT_BRANCH",
    "DEFAULT_LOG_LIMIT",
    "MAX_LOG_LIMIT",
    "STRATEGIES",
    "BranchTable",
    "ConflictHunk",
    "ContentOf",
    "DiffHunk",
    "DiffLine",
    "Edit",
    "HeadMove",
    "InvalidGraph",
    "LineRange",
    "LogPage",
    "MergePlan",
    "MergeResult",
    "Strategy",
    "TextDiff",
    "VersionGraph",
    "VersionNode",
    "VersionSpec",
    "classify_move",
    "diff_texts",
    "line_edits",
    "make_version",
    "merge",
    "merge3",
    "merge_many",
    "plan_merge",
    "plan_revert",
    "plan_revise",
    "split_lines",
    "unified_diff",
    "validate_branch",
    "validate_strategy",
]
