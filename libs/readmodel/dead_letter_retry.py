"""The SQL behind ``mnemos dlq retry``: one projector dead letter, whether re-applying it now
keeps stream order, and clearing it once it applied.

Every function takes a connection whose search path is the live read-model schema; the caller
runs them inside one transaction that holds the projector's swap fence exclusively
(:func:`fence_projection`), so no live batch commits between the checks and the re-application.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "PROJECTOR",
    "OpenDeadLetter",
    "clear_dead_letter",
    "earlier_open_on_subject",
    "fence_projection",
    "first_seq_of_memory",
    "later_applied_on_memory",
    "open_dead_letter",
    "open_dead_letter_seqs",
]

PROJECTOR: Final = "projector"
"""The ``consumer`` of the projector's rows in ``dead_letters``."""

Conn = Any


@dataclass(frozen=True, slots=True)
class OpenDeadLetter:
    """A row of ``dead_letters``: an event the projector gave up on, with its exact bytes."""

    seq: int
    event_id: str | None
    subject: str
    error: str
    attempts: int
    raw: bytes


async def fence_projection(conn: Conn, fence_key: int) -> None:
    """Inside a transaction: the exclusive side of the swap fence every live batch holds
    shared, so the live projector pauses between two batches until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (fence_key,))


async def open_dead_letter(conn: Conn, seq: int) -> OpenDeadLetter | None:
    """The projector's dead letter at stream sequence ``seq``, or None if there is none (never
    dead-lettered, already retried, or cleared by a replay)."""
    cur = await conn.execute(
        "SELECT seq, event_id, subject, error, attempts, raw FROM dead_letters"
        " WHERE consumer = %s AND seq = %s", (PROJECTOR, seq))
    row = await cur.fetchone()
    if row is None:
        return None
    return OpenDeadLetter(seq=int(row["seq"]), event_id=row["event_id"],
                          subject=str(row["subject"]), error=str(row["error"]),
                          attempts=int(row["attempts"]), raw=bytes(row["raw"]))


async def open_dead_letter_seqs(conn: Conn) -> list[int]:
    """Stream sequences of every open projector dead letter, oldest first."""
    cur = await conn.execute(
        "SELECT seq FROM dead_letters WHERE consumer = %s ORDER BY seq", (PROJECTOR,))
    return [int(row["seq"]) for row in await cur.fetchall()]


async def earlier_open_on_subject(conn: Conn, subject: str, seq: int) -> int | None:
    """The oldest open dead letter on ``subject`` before ``seq`` (it must be retried first)."""
    cur = await conn.execute(
        "SELECT min(seq) AS s FROM dead_letters WHERE consumer = %s AND subject = %s"
        " AND seq < %s", (PROJECTOR, subject, seq))
    row = await cur.fetchone()
    return int(row["s"]) if row and row["s"] is not None else None


async def later_applied_on_memory(conn: Conn, ns: str, memory_id: str, seq: int,
                                  limit: int = 5) -> list[int]:
    """Stream sequences (the first ``limit``) of events on this memory applied after ``seq``."""
    cur = await conn.execute(
        "SELECT seq FROM memory_events WHERE ns = %s AND memory_id = %s AND seq > %s"
        " ORDER BY seq LIMIT %s", (ns, memory_id, seq, limit))
    return [int(row["seq"]) for row in await cur.fetchall()]


async def first_seq_of_memory(conn: Conn, ns: str, memory_id: str) -> int | None:
    """The stream sequence of the first applied event of a memory (its creation), if any."""
    cur = await conn.execute(
        "SELECT min(seq) AS s FROM memory_events WHERE ns = %s AND memory_id = %s",
        (ns, memory_id))
    row = await cur.fetchone()
    return int(row["s"]) if row and row["s"] is not None else None


async def clear_dead_letter(conn: Conn, seq: int, ns: str, memory_id: str) -> None:
    """After the event at ``seq`` applied: drop its dead letter, and mark the memory diverged
    only by the dead letters still open on it (none: it is served again)."""
    cur = await conn.execute(
        "DELETE FROM dead_letters WHERE consumer = %s AND seq = %s RETURNING subject",
        (PROJECTOR, seq))
    row = await cur.fetchone()
    if row is None:
        return
    await conn.execute(
        "UPDATE memories SET diverged_seq = (SELECT min(d.seq) FROM dead_letters d"
        " WHERE d.consumer = %s AND d.subject = %s) WHERE ns = %s AND memory_id = %s",
        (PROJECTOR, row["subject"], ns, memory_id))
