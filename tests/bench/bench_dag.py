"""Latency of the pure DAG core on memories with 10k versions (figures only, no assertions).

Run: ``python -m tests.bench.bench_dag``. Two histories of 10,000 versions are built: a linear
one, and a branchy one (feature branches merged back into ``main``, a long-lived ``agent``
branch that merges ``main`` in now and then). Contents follow the linear history: a 200-line
document with one even-numbered line rewritten per version, so far-apart versions differ in about
100 interleaved lines. Printed: p50/p99 over repeated calls.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Final

from libs.dag import VersionGraph, VersionNode, diff_texts, merge3, split_lines, unified_diff
from libs.events.ids import content_hash
from libs.events.versions import version_id

MEMORY: Final = "0190a8b2-0000-7000-8000-00000000bench"
VERSIONS: Final = 10_000
DOC_LINES: Final = 200
PAGE: Final = 50


class Builder:
    """Appends versions with real content-addressed ids and increasing seqs."""

    def __init__(self) -> None:
        self.nodes: list[VersionNode] = []

    def add(self, *parents: str) -> str:
        seq = len(self.nodes) + 1
        vid = version_id(MEMORY, content_hash(str(seq)), {}, parents)
        self.nodes.append(VersionNode(vid, tuple(sorted(parents)), seq))
        return vid


def linear_history() -> list[VersionNode]:
    builder = Builder()
    head = builder.add()
    while len(builder.nodes) < VERSIONS:
        head = builder.add(head)
    return builder.nodes


def branchy_history(rnd: random.Random) -> tuple[list[VersionNode], str, str]:
    """Returns the records and the final heads of ``main`` and ``agent``."""
    builder = Builder()
    main = agent = builder.add()
    agent = builder.add(agent)
    while len(builder.nodes) < VERSIONS - 12:
        roll = rnd.random()
        if roll < 0.05:  # a feature branch, with main moving meanwhile, merged back
            feature = main
            for _ in range(rnd.randint(1, 8)):
                feature = builder.add(feature)
            for _ in range(rnd.randint(0, 3)):
                main = builder.add(main)
            main = builder.add(main, feature)
        elif roll < 0.15:
            agent = builder.add(agent)
        elif roll < 0.16:  # the agent picks up main's work
            agent = builder.add(agent, main)
        else:
            main = builder.add(main)
    while len(builder.nodes) < VERSIONS:
        main = builder.add(main)
    return builder.nodes, main, agent


def documents(rnd: random.Random) -> list[str]:
    """The content of every linear version: one even-numbered line rewritten per version."""
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(DOC_LINES)]
    texts = ["".join(lines)]
    for version in range(1, VERSIONS):
        at = 2 * rnd.randrange(DOC_LINES // 2)  # odd lines never change: far versions share them
        lines[at] = f"line {at}: revised in version {version}\n"
        texts.append("".join(lines))
    return texts


def measure(name: str, call: Callable[[int], object], runs: int) -> None:
    """Time ``call(i)`` for i in 0..runs-1 and print p50/p99 in milliseconds."""
    call(0)  # warm caches and imports once, outside the figures
    gc.collect()
    samples: list[float] = []
    for i in range(runs):
        start = time.perf_counter_ns()
        call(i)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    sys.stdout.write(f"  {name:<58} p50 {p50:9.3f} ms   p99 {p99:9.3f} ms   (n={runs})\n")


def bench_graph(label: str, nodes: list[VersionNode], a: str, b: str, rnd: random.Random) -> None:
    sys.stdout.write(f"{label}: {len(nodes)} versions\n")
    measure("build VersionGraph.from_nodes", lambda _: VersionGraph.from_nodes(nodes), 5)
    graph = VersionGraph.from_nodes(nodes)
    order = [n.version_id for n in graph.walk(a)]
    measure(f"log first page ({PAGE}) from the tip", lambda _: graph.log(a, PAGE), 300)
    cursors = [rnd.choice(order[:-1]) for _ in range(300)]
    measure(
        f"log page ({PAGE}) at a random cursor, warm",
        lambda i: graph.log(a, PAGE, cursors[i]),
        300,
    )
    cold_heads = order[1:41]  # each head's first cursor page builds its order (cache holds 8)
    measure(
        f"log page ({PAGE}) at a cursor, cold (new head)",
        lambda i: graph.log(cold_heads[i], PAGE, cold_heads[i]),
        40,
    )

    def page_through(_: int) -> None:
        cursor: str | None = None
        while True:
            page = graph.log(a, PAGE, cursor)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    measure("log: every page of the whole history, warm", page_through, 5)
    measure("common_ancestor(tip, far version)", lambda _: graph.common_ancestor(a, b), 50)
    measure("is_ancestor(root, tip)", lambda _: graph.is_ancestor(order[-1], a), 50)


def bench_contents(rnd: random.Random) -> None:
    texts = documents(rnd)
    sys.stdout.write(f"contents: {DOC_LINES}-line document, one even line rewritten per version\n")
    far = (texts[100], texts[VERSIONS - 100])
    near = (texts[5000], texts[5010])
    measure("diff far apart (v100 vs v9900)", lambda _: diff_texts(*far), 50)
    measure("unified_diff far apart (v100 vs v9900)", lambda _: unified_diff(*far), 50)
    measure("diff near (v5000 vs v5010)", lambda _: diff_texts(*near), 300)
    ours = texts[5000].replace("line 3:", "LINE 3:", 1)
    theirs = texts[5000].replace("line 150:", "LINE 150:", 1)
    measure("merge3 clean, one edit per side", lambda _: merge3(texts[5000], ours, theirs), 300)
    measure("merge3 far apart heads (conflicting)", lambda _: merge3(texts[0], *far), 50)
    big = "".join(f"{i:07d} {'x' * 56}\n" for i in range(1024))  # 64 KiB, the content limit
    big_edited = big.replace("0000500 ", "0000500!", 1).replace("0001000 ", "", 1)
    measure("diff 64 KiB content, 2 edits", lambda _: diff_texts(big, big_edited), 50)
    big_other = "".join(f"{i:07d} {'y' * 56}\n" for i in range(1024))
    measure(
        "diff 64 KiB content, rewritten (no line shared)", lambda _: diff_texts(big, big_other), 10
    )
    shuffled = split_lines(big)
    random.Random(1).shuffle(shuffled)
    measure(
        "diff 64 KiB content, lines shuffled (over MAX_EDIT_COST)",
        lambda _: diff_texts(big, "".join(shuffled)),
        10,
    )


def main() -> None:
    """Build the histories and print the figures."""
    rnd = random.Random(20_240_601)
    sys.stdout.write(f"bench_dag (python {sys.version.split()[0]}), times per call\n")
    linear = linear_history()
    bench_graph("linear", linear, linear[-1].version_id, linear[10].version_id, rnd)
    nodes, main_head, agent_head = branchy_history(rnd)
    merges = sum(len(n.parent_ids) > 1 for n in nodes)
    bench_graph(f"branchy ({merges} merges)", nodes, main_head, agent_head, rnd)
    bench_contents(rnd)


if __name__ == "__main__":
    main()
