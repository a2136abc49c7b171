"""A circuit breaker per provider: closed, open, half-open, on an injected clock.

Closed counts consecutive failures; at ``failure_threshold`` it opens and every call is refused
at once (:class:`~libs.llm.errors.CircuitOpen`) for ``reset_after_s``. Then it is half-open: up
to ``half_open_calls`` trial calls go through; one success closes it, one failure opens it again
for another full period. The clock is injected so tests step through the states without
sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import msgspec

from libs.llm.errors import CircuitOpen

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds of a :class:`CircuitBreaker`."""

    failure_threshold: int = 5
    reset_after_s: float = 30.0
    half_open_calls: int = 1


class CircuitBreaker:
    """Refuses calls to a provider that keeps failing, and probes it again after a while."""

    def __init__(
        self, name: str, policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trials = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose period has passed reads half-open."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.policy.reset_after_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Admit a call or raise :class:`CircuitOpen`; a half-open trial takes a slot."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and self._trials < self.policy.half_open_calls:
            self._trials += 1
            return
        assert self._opened_at is not None
        wait = max(0.0, self.policy.reset_after_s - (self._clock() - self._opened_at))
        raise CircuitOpen(f"circuit open for {self.name}", provider=self.name,
                          retry_in_s=round(wait, 3))

    def record_success(self) -> None:
        """A call succeeded: the breaker closes and the failure count resets."""
        self._failures = 0
        self._opened_at = None
        self._trials = 0

    def record_failure(self) -> None:
        """A call failed in a way that counts against the provider (not a 4xx rejection)."""
        if self._opened_at is not None:
            # A failed trial (or a straggler that started before opening) restarts the period.
            self._opened_at = self._clock()
            self._trials = 0
            return
        self._failures += 1
        if self._failures >= self.policy.failure_threshold:
            self._opened_at = self._clock()
            self._trials = 0
