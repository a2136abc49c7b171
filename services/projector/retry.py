"""Retrying one projector dead letter: re-apply the stored event, or refuse and say why.

A dead letter is an event of the stream the projector gave up on. The stream is history and is
never appended to here: a retry decodes the event's bytes kept in ``dead_letters`` and runs them
through the projector's own path (:mod:`.decoding`, the projections of
:mod:`libs.readmodel.projections`, the same row-count checks), against the live schema, in one
transaction that holds the swap fence exclusively (the live projector pauses between batches).

Re-applying an old event now equals having applied it in stream order only if nothing it
depends on moved since. So a retry is **refused** (nothing changes) when

- an earlier dead letter on the same memory is still open (retry that one first);
- a later event on the same memory was applied after this one was skipped (the read model moved
  past it; a rebuild, ``mnemos replay --swap --force``, is the only sound repair);
- it links to a memory created after it (in stream order the link had no target);
- it is not a memory event (the registry's folds read across aggregates).

Otherwise the event is applied; if it still fails, the transaction rolls back and the error is
reported (nothing changes). If it applies, its ``dead_letters`` row goes and the memory's
``diverged_seq`` is recomputed from the dead letters still open on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from libs.consumer import Delivery, advisory_key
from libs.consumer.dead_letters import memory_of_subject
from libs.embeddings import Embedder
from libs.events import MemoryLinked, MnemosError
from libs.readmodel.dead_letter_retry import (
    OpenDeadLetter,
    clear_dead_letter,
    earlier_open_on_subject,
    fence_projection,
    first_seq_of_memory,
    later_applied_on_memory,
    open_dead_letter,
)
from libs.readmodel.embedding_cache import embed_contents
from libs.readmodel.projections import InvariantViolation, event_type, project
from libs.readmodel.statement import Statement
from libs.runtime.logging import get_logger
from services.projector.batch import Conn, is_poison
from services.projector.decoding import Decoded, decode_batch

__all__ = ["REPLAY_HINT", "RetryOutcome", "RetryResult", "retry_dead_letter"]

log = get_logger(__name__)

RetryOutcome = Literal["applied", "failed", "refused", "not_open"]

REPLAY_HINT = ("fix the cause, then rebuild: `mnemos replay --swap --force` projects every "
               "event again in stream order")


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What retrying the projector's dead letter at stream sequence ``seq`` did."""

    seq: int
    outcome: RetryOutcome
    reason: str
    event_type: str | None = None
    ns: str | None = None
    memory_id: str | None = None

    @property
    def ok(self) -> bool:
        """Applied now, or nothing left to retry."""
        return self.outcome in ("applied", "not_open")


class _StillFails(Exception):
    """Rolls the retry's transaction back; carries the projection's error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _describe(error: BaseException) -> str:
    return " | ".join(line.strip() for line in
                      f"{type(error).__name__}: {error}".splitlines() if line.strip())[:1000]


async def retry_dead_letter(conn: Conn, embedder: Embedder | None, schema: str, seq: int
                            ) -> RetryResult:
    """Retry the projector's dead letter at stream sequence ``seq`` on ``schema`` (the live
    read models; ``conn`` in autocommit mode with that search path). ``embedder`` may be None
    when the caller knows the content is cached; a miss then fails the retry."""
    letter = await open_dead_letter(conn, seq)
    if letter is None:
        return RetryResult(seq, "not_open", "no open dead letter at this sequence (already "
                           "retried, cleared by a replay, or never dead-lettered)")
    item = decode_batch([Delivery(letter.seq, letter.subject, letter.raw, letter.event_id)])[0]
    target = memory_of_subject(letter.subject)
    if item.error is not None or item.event is None:
        return RetryResult(seq, "failed", _describe(item.error or ValueError("undecodable")))
    base = RetryResult(seq, "refused", "", event_type(item.event), *(target or (None, None)))
    if target is None or not item.projected:
        return _with(base, "refused", "only memory events can be retried one at a time; "
                     + REPLAY_HINT)
    try:
        statements = await _plan(conn, embedder, item)
    except MnemosError as exc:
        return _with(base, "failed", _describe(exc))
    try:
        async with conn.transaction():
            await fence_projection(conn, advisory_key("swap", schema))
            refusal = await _refusal(conn, letter, item, *target)
            if refusal is not None:
                return _with(base, "refused", refusal)
            await _apply(conn, statements)
            await clear_dead_letter(conn, seq, *target)
    except _StillFails as failed:
        log.warning("dead_letter_retry_failed", seq=seq, error=str(failed.error))
        return _with(base, "failed", _describe(failed.error))
    log.info("dead_letter_retried", seq=seq, event_type=base.event_type, ns=target[0],
             memory_id=target[1])
    return _with(base, "applied", "re-applied; its dead letter is cleared")


def _with(base: RetryResult, outcome: RetryOutcome, reason: str) -> RetryResult:
    return RetryResult(base.seq, outcome, reason, base.event_type, base.ns, base.memory_id)


async def _plan(conn: Conn, embedder: Embedder | None, item: Decoded) -> list[Statement]:
    """The event's statements, with its content's embedding (from the cache, else computed)."""
    assert item.event is not None
    embedding = None
    if item.digest is not None and item.text is not None:
        if embedder is None:
            raise InvariantViolation("no embedder to embed the event's content")
        embedding = (await embed_contents(conn, embedder, {item.digest: item.text}))[item.digest]
    return project(item.event, item.delivery.seq, embedding)


async def _refusal(conn: Conn, letter: OpenDeadLetter, item: Decoded, ns: str, memory_id: str
                   ) -> str | None:
    """Why applying this event now would not equal applying it in stream order, if it would
    not (checked under the fence, so the answer holds until the commit)."""
    if await open_dead_letter(conn, letter.seq) is None:
        return "its dead letter was cleared meanwhile"
    earlier = await earlier_open_on_subject(conn, letter.subject, letter.seq)
    if earlier is not None:
        return (f"the dead letter at seq {earlier} on the same memory is older: events on one "
                "memory apply in order, retry that one first")
    later = await later_applied_on_memory(conn, ns, memory_id, letter.seq)
    if later:
        shown = ", ".join(str(s) for s in later)
        return (f"later events on memory {memory_id} were applied after it was skipped (seq "
                f"{shown}{', …' if len(later) >= 5 else ''}): applying it now would reorder "
                f"the memory's history; {REPLAY_HINT}")
    event = item.event
    if isinstance(event, MemoryLinked):
        created = await first_seq_of_memory(conn, ns, event.data.target_memory_id)
        if created is not None and created > letter.seq:
            return (f"its target {event.data.target_memory_id} was created after it (seq "
                    f"{created}): in stream order the link had no target; {REPLAY_HINT}")
    return None


async def _apply(conn: Conn, statements: list[Statement]) -> None:
    """The event's statements with the projector's row-count checks; a deterministic failure
    rolls the whole retry back."""
    try:
        for statement in statements:
            cur = await conn.execute(statement.query, statement.params)
            if statement.expect_rows is not None and cur.rowcount != statement.expect_rows:
                raise InvariantViolation(statement.error.format(**statement.params))
    except (MnemosError, psycopg.Error) as exc:
        if is_poison(exc):
            raise _StillFails(exc) from exc
        raise
