"""Retry timing: exponential backoff with full jitter, and ``Retry-After`` parsing (pure)."""

from __future__ import annotations

import email.utils
import math
import random
from datetime import UTC, datetime

import msgspec

__all__ = ["RetryPolicy", "backoff_delay", "parse_retry_after", "retry_delay"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a provider call is retried.

    ``attempts`` counts the first try. The n-th retry waits a uniform random time in
    ``[0, min(max_delay_s, base_delay_s * 2**n)]`` ("full jitter": retries from many clients
    spread out instead of arriving in waves). A server's ``Retry-After`` replaces the computed
    delay when it is longer, capped at ``max_retry_after_s``; past that cap the call fails at
    once instead of sleeping through a long ban.
    """

    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Returns None for a missing or unparseable value; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # RFC 9110 dates are GMT
    return max(0.0, (when - now).total_seconds())


def backoff_delay(retry: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full-jitter delay before retry number ``retry`` (0 = the first retry)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** min(retry, 62))
    return rng.uniform(0.0, ceiling)


def retry_delay(
    retry: int, policy: RetryPolicy, rng: random.Random, retry_after_s: float | None
) -> float | None:
    """The wait before retry ``retry``, or None when no retry should be made.

    None when the attempts are used up or the server asks for more than
    ``policy.max_retry_after_s``.
    """
    if retry + 1 >= policy.attempts:
        return None
    delay = backoff_delay(retry, policy, rng)
    if retry_after_s is not None:
        if retry_after_s > policy.max_retry_after_s:
            return None
        delay = max(delay, retry_after_s)
    return delay
