"""Retry timing and the circuit breaker: pure, on injected clocks and seeded randomness."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from libs.llm import BreakerPolicy, CircuitBreaker, CircuitOpen, RetryPolicy, parse_retry_after
from libs.llm.retry import backoff_delay, retry_delay

NOW = datetime(2025, 6, 3, 10, 12, 44, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2", 2.0), (" 120 ", 120.0), ("0", 0.0), ("1.5", 1.5),
    ("Tue, 03 Jun 2025 10:12:54 GMT", 10.0),
    ("Tue, 03 Jun 2025 10:00:00 GMT", 0.0),  # a date in the past: retry now
    ("", None), (None, None), ("soon", None), ("-3", None), ("inf", None), ("nan", None),
    ("1e400", None), ("\x00", None), ("Tue, 99 Foo 2025", None),
])
def test_retry_after_accepts_seconds_and_http_dates(value: str | None,
                                                    expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_backoff_is_full_jitter_within_an_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=0.5, max_delay_s=8.0)
    rng = random.Random(7)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0),
                           (10_000, 8.0)]:
        delays = [backoff_delay(retry, policy, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not a fixed step


def test_backoff_is_deterministic_for_a_seed() -> None:
    policy = RetryPolicy()
    first = [backoff_delay(i, policy, random.Random(42)) for i in range(5)]
    again = [backoff_delay(i, policy, random.Random(42)) for i in range(5)]
    assert first == again


def test_retry_after_wins_when_longer_and_a_long_ban_is_not_slept_through() -> None:
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.01, max_retry_after_s=30)
    rng = random.Random(1)
    assert retry_delay(0, policy, rng, 5.0) == 5.0
    assert retry_delay(0, policy, rng, 31.0) is None
    assert retry_delay(2, policy, rng, None) is None  # attempts used up
    assert retry_delay(1, policy, rng, None) is not None


def state(breaker: CircuitBreaker) -> str:
    return breaker.state  # read through a call: mypy would narrow the property


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_breaker_walks_closed_open_half_open_closed() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", BreakerPolicy(failure_threshold=3, reset_after_s=30), clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert state(breaker) == "closed"
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert state(breaker) == "open"
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call()
    assert info.value.detail["retry_in_s"] == 30.0
    clock.t += 29.999
    assert state(breaker) == "open"
    clock.t += 0.001
    assert state(breaker) == "half_open"
    breaker.before_call()  # the one trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # no second trial while the first is out
    breaker.record_success()
    assert state(breaker) == "closed"
    breaker.before_call()


def test_a_failed_trial_reopens_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", BreakerPolicy(failure_threshold=1, reset_after_s=10), clock)
    breaker.record_failure()
    clock.t += 10
    breaker.before_call()
    breaker.record_failure()
    assert state(breaker) == "open"
    clock.t += 9.9
    assert state(breaker) == "open"
    clock.t += 0.1
    assert state(breaker) == "half_open"
