"""Leader election with hot standbys: one Postgres session advisory lock per role and schema.

The active instance holds the lock *on the connection that commits its work*: if that connection
dies, the lock goes with it, so an instance that lost its lock can never commit again (no split
brain). Standbys poll the lock. One key scheme for every consumer (and the replay's fences).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import blake3

__all__ = ["advisory_key", "sleep_or_stop", "wait_for_lock"]


def advisory_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``purpose`` on ``schema``."""
    digest = blake3.blake3(f"mnemos:{purpose}:{schema}".encode()).digest(length=8)
    return int.from_bytes(digest, "big", signed=True)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def wait_for_lock(conn: Any, key: int, stop: asyncio.Event, poll_s: float,
                        on_standby: Any = None) -> bool:
    """Poll ``pg_try_advisory_lock(key)`` on ``conn`` until held (True) or ``stop`` (False);
    ``on_standby()`` is called once when the first attempt fails."""
    announced = False
    while not stop.is_set():
        async with conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key,))
            row = await cur.fetchone()
        if row and (row["held"] if isinstance(row, dict) else row[0]):
            return True
        if not announced and on_standby is not None:
            on_standby()
            announced = True
        await sleep_or_stop(stop, poll_s)
    return False
