"""Where in the stream "the state as of" a sequence or a time is (``mnemos replay --as-of``).

A time means the recording clock of the stream: the state as of ``T`` holds every event the
stream had stored by ``T`` (JetStream's storage time, which only grows along the sequence), so
the point is found by a binary search over stored messages, ~20 reads for a million events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from nats.js.errors import NotFoundError

from libs.events import EVENT_WILDCARD, EVENTS_STREAM, InvalidInput

__all__ = ["AsOf", "parse_as_of", "resolve_as_of"]

_ISO_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?", re.ASCII)


@dataclass(frozen=True, slots=True)
class AsOf:
    """A point of history: a stream sequence, or a time (timezone-aware)."""

    seq: int | None = None
    at: datetime | None = None


def parse_as_of(until_seq: int | None, as_of: str | None) -> AsOf | None:
    """The point named on the command line (at most one of the two), validated."""
    if until_seq is not None and as_of is not None:
        raise InvalidInput("give --until-seq or --as-of, not both", field="as_of")
    if until_seq is not None:
        if until_seq < 1:
            raise InvalidInput("--until-seq must be 1 or more", field="until_seq")
        return AsOf(seq=until_seq)
    if as_of is None:
        return None
    try:
        if not _ISO_TIME.fullmatch(as_of):  # fromisoformat alone lets odd characters through
            raise ValueError(as_of)
        at = datetime.fromisoformat(as_of)
    except ValueError:
        raise InvalidInput(f"--as-of {as_of!r} is not an ISO 8601 time",
                           field="as_of") from None
    if at.tzinfo is None:
        raise InvalidInput("--as-of needs a UTC offset (e.g. 2026-12-02T17:00:00Z)",
                           field="as_of")
    return AsOf(at=at)


async def resolve_as_of(js: Any, point: AsOf, last_seq: int) -> int:
    """The last stream sequence that belongs to the state as of ``point``."""
    if point.seq is not None:
        if point.seq > last_seq:
            raise InvalidInput(f"--until-seq {point.seq} is beyond the stream's last sequence "
                               f"{last_seq}", field="until_seq")
        return point.seq
    assert point.at is not None
    low, high, found = 1, last_seq, 0
    while low <= high:
        middle = (low + high) // 2
        stored = await _stored_at_or_after(js, middle)
        if stored is None or stored[0] > high:
            high = middle - 1  # nothing stored in [middle, high]
        elif stored[1] <= point.at:
            found, low = stored[0], stored[0] + 1
        else:
            high = middle - 1
    if not found:
        raise InvalidInput(f"the stream holds no event stored at or before {point.at}",
                           field="as_of")
    return found


async def _stored_at_or_after(js: Any, seq: int) -> tuple[int, datetime] | None:
    """The sequence and storage time of the first stored message at or after ``seq``."""
    try:
        msg = await js.get_msg(EVENTS_STREAM, seq, subject=EVENT_WILDCARD, next=True)
    except NotFoundError:
        return None
    if msg.seq is None or msg.time is None:
        return None
    return int(msg.seq), msg.time
