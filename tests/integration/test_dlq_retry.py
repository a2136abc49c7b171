"""``mnemos dlq retry`` (issue 17): a projector dead letter re-applied after its cause is fixed,
refused when that would reorder a memory's history, never an append to the event stream.

The "projection bug" is a trigger on the live ``memories`` table that rejects some content
with a data error (so the projector dead-letters the event after its bounded retries);
dropping the trigger is the fix.
"""

from __future__ import annotations

from typing import Any

import pytest

from libs.events import EVENTS_STREAM
from libs.runtime.config import Config
from mnemos.dlq import read_dead_letters, retry_dead_letters
from services.projector.replay import replay
from tests.support.events import (
    History,
    publish,
    read_models,
    rows,
    running_projector,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration

BUG = ("CREATE FUNCTION mnemos.simulated_bug() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
       " IF NEW.content LIKE '%boom%' THEN RAISE EXCEPTION 'simulated projection bug'"
       " USING ERRCODE = '22023'; END IF; RETURN NEW; END $$;"
       " CREATE TRIGGER simulated_bug BEFORE INSERT OR UPDATE ON mnemos.memories"
       " FOR EACH ROW EXECUTE FUNCTION mnemos.simulated_bug()")
FIX = "DROP TRIGGER simulated_bug ON mnemos.memories; DROP FUNCTION mnemos.simulated_bug()"


async def _dlq_seq(config: Config, original_seq: int) -> int:
    letters = [e for e in await read_dead_letters(config, "projector", limit=1000)
               if e.original_seq == original_seq and e.kind == "dead_letter"]
    assert len(letters) == 1, letters
    return letters[0].dlq_seq


async def _open(conn: Any) -> list[int]:
    return [int(r["seq"]) for r in await rows(conn, "SELECT seq FROM dead_letters ORDER BY seq")]


async def test_retry_fails_unchanged_then_applies_after_the_fix_and_refuses_reordering(
        config: Config, nats_js: Any) -> None:
    url, h = config.database_url or "", History()
    async with running_projector(config):
        kept = h.created("kept as it is")
        await wait_checkpoint(url, await publish(nats_js, kept))
        async with read_models(url) as conn:
            await _scenario(config, nats_js, conn, h, kept)


async def _scenario(config: Config, nats_js: Any, conn: Any, h: History, kept: Any) -> None:
    url = config.database_url or ""
    await conn.execute(BUG)
    born = h.created("boom: a memory the buggy projection rejects")
    b_seq = await publish(nats_js, born)
    t_seq = await publish(nats_js, h.tagged(born.aggregate_id, added=("x",)))
    await wait_checkpoint(url, t_seq)
    assert await _open(conn) == [b_seq, t_seq]  # the tag of a memory never projected too
    stream_end = (await nats_js.stream_info(EVENTS_STREAM)).state.last_seq

    # Out of order: the tag cannot go before the creation it follows.
    [early] = await retry_dead_letters(config, await _dlq_seq(config, t_seq))
    assert early.outcome == "refused" and f"seq {b_seq}" in early.reason, early
    # Cause not fixed: the same error, nothing changed.
    [still] = await retry_dead_letters(config, await _dlq_seq(config, b_seq))
    assert still.outcome == "failed" and "simulated projection bug" in still.reason, still
    assert await _open(conn) == [b_seq, t_seq]
    assert await rows(conn, "SELECT 1 FROM memories WHERE memory_id = %s",
                      (born.aggregate_id,)) == []

    await conn.execute(FIX)
    applied = await retry_dead_letters(config)  # --all, oldest first
    assert [(r.seq, r.outcome) for r in applied] == [(b_seq, "applied"), (t_seq, "applied")]
    [memory] = await rows(conn, "SELECT tags, diverged_seq, revision FROM memories"
                          " WHERE memory_id = %s", (born.aggregate_id,))
    assert memory == {"tags": ["x"], "diverged_seq": None, "revision": t_seq}, memory
    assert await _open(conn) == []
    [again] = await retry_dead_letters(config, await _dlq_seq(config, b_seq))
    assert again.outcome == "not_open", again
    # History untouched; the repair is on the dead-letter stream.
    assert (await nats_js.stream_info(EVENTS_STREAM)).state.last_seq == stream_end
    listed = await read_dead_letters(config, "projector", limit=1000)
    assert {(e.original_seq, e.kind, e.status) for e in listed} == {
        (b_seq, "dead_letter", "retried"), (t_seq, "dead_letter", "retried"),
        (b_seq, "retry", "applied"), (t_seq, "retry", "applied")}
    # What the retries left equals projecting the stream in order with the fixed code.
    report = await replay(config, swap=False, progress=False)
    assert report.verified is True, report.summary()

    # A later event on the memory applied after the skipped one: refused, unchanged.
    await conn.execute(BUG)
    r_seq = await publish(nats_js, h.revised(kept.aggregate_id, "boom: a revision"))
    later = await publish(nats_js, h.tagged(kept.aggregate_id, added=("y",)))
    await wait_checkpoint(url, later)
    await conn.execute(FIX)
    [refused] = await retry_dead_letters(config, await _dlq_seq(config, r_seq))
    assert refused.outcome == "refused" and f"seq {later}" in refused.reason, refused
    assert "mnemos replay --swap --force" in refused.reason
    assert await _open(conn) == [r_seq]
    [kept_row] = await rows(conn, "SELECT content, diverged_seq FROM memories"
                            " WHERE memory_id = %s", (kept.aggregate_id,))
    assert kept_row == {"content": "kept as it is", "diverged_seq": r_seq}, kept_row
