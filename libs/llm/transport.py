"""One HTTP edge for every provider: timeouts, retries with jittered backoff that honour
``Retry-After``, a circuit breaker, and the mapping of failures to :mod:`libs.llm.errors`.

Every adapter (model listing and chat, every provider) goes through :class:`ProviderHttp`, so
the retry and failure rules are written once.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx
import msgspec

from libs.llm.breaker import BreakerPolicy, CircuitBreaker
from libs.llm.errors import (
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    is_retryable,
)
from libs.llm.retry import RetryPolicy, parse_retry_after, retry_delay
from libs.runtime.logging import get_logger

__all__ = ["CallPolicy", "ProviderHttp", "decode_body"]

T = TypeVar("T")
log = get_logger(__name__)

MAX_ERROR_TEXT: Final = 300
"""Characters of a provider's error message kept in our error (bodies can be whole pages)."""
OVERLOADED_STATUSES: Final = frozenset({429})
"""Statuses that mean "slow down" (Anthropic's 529 counts as a server error, also retried)."""


class CallPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Timeouts, retries and breaker thresholds of one provider's calls."""

    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()


class _ErrorBody(msgspec.Struct):
    error: Any = None
    message: Any = None


def _error_text(response: httpx.Response) -> tuple[str, float | None]:
    """The provider's own error message, and a retry hint carried in the body, if any.

    Gemini puts its hint in ``error.details[].retryDelay`` (``"17s"``) rather than a header.
    """
    try:
        body = msgspec.json.decode(response.content, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return response.text[:MAX_ERROR_TEXT], None
    inner = body.error
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        return str(inner["message"])[:MAX_ERROR_TEXT], _retry_info(inner.get("details"))
    if isinstance(inner, str):
        return inner[:MAX_ERROR_TEXT], None
    if isinstance(body.message, str):
        return body.message[:MAX_ERROR_TEXT], None
    return response.text[:MAX_ERROR_TEXT], None


def _retry_info(details: object) -> float | None:
    if not isinstance(details, list):
        return None
    for item in details:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def decode_body(response: httpx.Response, type_: type[T], provider: str) -> T:
    """Decode a 2xx JSON body into ``type_`` or raise :class:`MalformedResponse`."""
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedResponse(
            f"{provider} sent a malformed body for {response.request.url.path}: {exc}",
            provider=provider, path=response.request.url.path,
        ) from None


class ProviderHttp:
    """An async HTTP client bound to one provider's base URL and credentials.

    ``sleep``, ``rng`` and ``now`` are injected so tests control backoff without waiting.
    """

    def __init__(
        self, name: str, base_url: str, *, headers: Mapping[str, str] | None = None,
        policy: CallPolicy | None = None, client: httpx.AsyncClient | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None, now: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.policy = policy or CallPolicy()
        self.breaker = breaker or CircuitBreaker(name, self.policy.breaker)
        self._headers = dict(headers or {})
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._now = now or (lambda: datetime.now(UTC))

    async def aclose(self) -> None:
        """Close the underlying connection pool if this object created it."""
        if self._owns_client:
            await self._client.aclose()

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        json: object = None, timeout_s: float | None = None,
    ) -> httpx.Response:
        """Send a request with retries; return the 2xx response or raise a typed error.

        ``timeout_s`` bounds the whole call, retries and their waits included.
        """
        budget = timeout_s if timeout_s is not None else self.policy.timeout_s
        try:
            async with asyncio.timeout(budget):
                return await self._with_retries(method, path, params, json, budget)
        except TimeoutError:
            raise ProviderTimeout(f"{self.name} gave no answer to {method} {path} within "
                                  f"{budget:g}s", provider=self.name, path=path) from None

    async def _with_retries(
        self, method: str, path: str, params: Mapping[str, str] | None, json: object,
        budget: float,
    ) -> httpx.Response:
        retry = 0
        while True:
            try:
                return await self._attempt(method, path, params, json, budget)
            except ProviderError as exc:
                hint = exc.retry_after_s if isinstance(exc, RateLimited) else (
                    exc.detail.get("retry_after_s") if isinstance(exc, ProviderServerError)
                    else None)
                delay = retry_delay(retry, self.policy.retry, self._rng, hint) if (
                    is_retryable(exc)) else None
                if delay is None:
                    raise
                log.info("provider_retry", provider=self.name, path=path, retry=retry + 1,
                         delay_s=round(delay, 3), error=exc.code)
                await self._sleep(delay)
                retry += 1

    async def _attempt(
        self, method: str, path: str, params: Mapping[str, str] | None, json: object,
        budget: float,
    ) -> httpx.Response:
        self.breaker.before_call()
        timeout = httpx.Timeout(budget, connect=min(budget, self.policy.connect_timeout_s))
        try:
            response = await self._client.request(
                method, self.base_url + path, params=params, json=json, headers=self._headers,
                timeout=timeout,
            )
        except httpx.TimeoutException:
            self.breaker.record_failure()
            raise ProviderTimeout(f"{self.name} timed out on {method} {path}",
                                  provider=self.name, path=path) from None
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise ProviderUnreachable(f"{self.name} unreachable on {method} {path}: "
                                      f"{type(exc).__name__}", provider=self.name,
                                      path=path) from None
        error = self._classify(response, path)
        if error is None:
            self.breaker.record_success()
            return response
        if not isinstance(error, ProviderRejected):
            self.breaker.record_failure()
        raise error

    def _classify(self, response: httpx.Response, path: str) -> Exception | None:
        status = response.status_code
        if 200 <= status < 300:
            return None
        text, body_hint = _error_text(response)
        hint = parse_retry_after(response.headers.get("retry-after"), self._now())
        hint = body_hint if hint is None else hint
        where = {"provider": self.name, "path": path, "status": status}
        if status in OVERLOADED_STATUSES:
            return RateLimited(f"{self.name} rate limited: {text}", retry_after_s=hint, **where)
        if status == 408:
            return ProviderTimeout(f"{self.name} request timeout: {text}", **where)
        if status >= 500:
            return ProviderServerError(f"{self.name} server error {status}: {text}",
                                       retry_after_s=hint, **where)
        return ProviderRejected(f"{self.name} rejected the request ({status}): {text}", **where)
