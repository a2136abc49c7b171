"""Both retrieval sides run at once; a failing side surfaces its own typed error and stops
the other."""

from __future__ import annotations

import asyncio

import pytest

from libs.events import InvalidInput
from libs.readmodel.fusion import score_fusion
from libs.readmodel.search import SearchSettings, fuse_concurrently


async def test_sides_run_at_once_and_fuse() -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def side(name: str, ranking: list[tuple[str, float]]) -> list[tuple[str, float]]:
        started.append(name)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 1)  # only passes if the other runs too
        return ranking

    fused = await fuse_concurrently(
        {"lexical": side("lexical", [("a", 2.0), ("b", 1.0)]),
         "dense": side("dense", [("b", 0.9), ("c", 0.5)])},
        lambda rankings: score_fusion(rankings, {"dense": 0.6, "lexical": 0.4}))
    assert [hit.doc_id for hit in fused] == ["b", "a", "c"]
    assert fused[0].ranks == {"lexical": 2, "dense": 1}
    assert fused[0].scores == {"lexical": 1.0, "dense": 0.9}


async def test_a_failing_side_raises_its_error_and_cancels_the_other() -> None:
    cancelled = asyncio.Event()

    async def slow() -> list[tuple[str, float]]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return []

    async def failing() -> list[tuple[str, float]]:
        await asyncio.sleep(0)
        raise InvalidInput("q has no searchable word", field="q")

    with pytest.raises(InvalidInput, match="no searchable word"):
        await fuse_concurrently({"dense": slow(), "lexical": failing()}, SearchSettings().fuse)
    assert cancelled.is_set()
