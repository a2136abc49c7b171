"""Typed failures of provider calls, inside the one error hierarchy (libs.events.errors).

Retryable failures (rate limited, timeout, server error, unreachable) are
:class:`~libs.events.errors.Unavailable`: the caller may try again or fail over to another
model. A provider's refusal of the request itself (bad key, unknown model, invalid body) is
:class:`ProviderRejected`, which failover does not paper over.
"""

from __future__ import annotations

from typing import ClassVar

from libs.events.errors import InvalidInput, Unavailable
from libs.events.registry import FailureCode

__all__ = [
    "CircuitOpen",
    "MalformedResponse",
    "ProviderError",
    "ProviderRejected",
    "ProviderServerError",
    "ProviderTimeout",
    "ProviderUnreachable",
    "RateLimited",
    "is_retryable",
    "should_fail_over",
]


class ProviderError(Unavailable):
    """A call to an LLM provider failed; ``failure`` names it in registry events."""

    code = "provider_unavailable"
    failure: ClassVar[FailureCode] = "server_error"


class RateLimited(ProviderError):
    """HTTP 429 (or a provider's overload status); ``retry_after_s`` is its hint, if any."""

    code = "provider_rate_limited"
    failure = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None, **detail: object):
        super().__init__(message, retry_after_s=retry_after_s, **detail)
        self.retry_after_s = retry_after_s


class ProviderTimeout(ProviderError):
    """No complete answer within the call's timeout."""

    code = "provider_timeout"
    failure = "timeout"


class ProviderServerError(ProviderError):
    """HTTP 5xx from the provider."""

    code = "provider_server_error"
    failure = "server_error"


class ProviderUnreachable(ProviderError):
    """The connection failed (refused, reset, DNS): the provider is not there."""

    code = "provider_unreachable"
    failure = "unreachable"


class MalformedResponse(ProviderError):
    """A 2xx body that is not the documented shape (bad JSON, missing fields, wrong types)."""

    code = "provider_malformed"
    failure = "malformed"


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: the call was not attempted."""

    code = "provider_circuit_open"
    failure = "circuit_open"


class ProviderRejected(InvalidInput):
    """HTTP 4xx other than 429: the provider refused this request (auth, model, body)."""

    code = "provider_rejected"
    failure: ClassVar[FailureCode] = "rejected"


def is_retryable(error: BaseException) -> bool:
    """True for failures the same request may not hit again: 429, 5xx, timeouts, resets."""
    return isinstance(error, RateLimited | ProviderTimeout | ProviderServerError
                      | ProviderUnreachable)


def should_fail_over(error: BaseException) -> bool:
    """True when another model should take the call: retryable, malformed, or circuit open.

    A rejection (4xx) is the request's fault and would fail the same way elsewhere.
    """
    return isinstance(error, ProviderError)
