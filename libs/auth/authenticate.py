"""One authenticator: a raw credential (API key or bearer JWT) in, a :class:`Principal` out.

Every transport hands this the credential exactly as received (an ``Authorization`` header value
``Bearer <credential>``, or the bare credential from a NATS header); what it asserts about
itself plays no part. The principal recorded on events is the one returned here.

Costs and freshness (the target is ≤ 0.1 ms per command for authentication + authorization):

- API keys: the stored record of a key id is cached for ``key_ttl_s`` (default 5 s). A hit
  costs one parse, one BLAKE3 of 60 bytes and a constant-time compare (a few µs); the secret is
  verified on every call, never cached as "accepted". A miss awaits the key lookup once per
  key id, however many requests arrive together.
- Revocation is effective within ``key_ttl_s`` on every gateway instance even if it never sees
  the event, and at once on an instance that calls :meth:`Authenticator.invalidate` when it
  sees ``ApiKeyRevoked`` (or ``ApiKeyIssued``, which clears a cached "unknown key"). A lookup
  that raced with an invalidation is redone, so it cannot re-cache the old record.
- Unknown key ids are cached as unknown for ``negative_ttl_s`` (1 s), bounding how hard a
  caller can hammer the lookup with one id; random ids are bounded by the LRU size.
- Bearer JWTs: the principal of a verified token is cached, keyed by the token, until the
  earlier of its ``exp`` and ``token_ttl_s``.
- Expiry is checked on every call against the wall clock, cached or not.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Final, Generic, TypeVar

import msgspec

from libs.auth.authorize import Principal
from libs.auth.errors import Unauthenticated
from libs.auth.keys import (
    StoredApiKey,
    looks_like_api_key,
    parse_key,
    verify_secret,
)
from libs.auth.oidc import OidcValidator, looks_like_jwt
from libs.runtime.logging import get_logger

__all__ = ["Authenticator", "AuthenticatorSettings", "KeyLookup", "credential_of"]

log = get_logger(__name__)

KeyLookup = Callable[[str], Awaitable[StoredApiKey | None]]
"""Key id -> the stored record, or None if no key has that id (backed by the read models)."""

_BEARER: Final = "bearer"
_MAX_CREDENTIAL: Final = 32_768

V = TypeVar("V")


class AuthenticatorSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Cache bounds of the authenticator."""

    key_ttl_s: float = 5.0
    """How long a looked-up key record is used: the bound on revocation delay."""
    negative_ttl_s: float = 1.0
    """How long an unknown key id is remembered as unknown."""
    token_ttl_s: float = 60.0
    """Longest a verified bearer token's principal is reused (never past its ``exp``)."""
    max_entries: int = 10_000
    """Entries per cache (keys, tokens); the least recently used go first."""


class _Lru(Generic[V]):
    """A small LRU map with per-entry deadlines on a monotonic clock."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, now: float) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, value: V, until: float) -> None:
        self._items[key] = (until, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class _KeyEntry(msgspec.Struct, frozen=True):
    record: StoredApiKey | None
    principal: Principal | None


def credential_of(raw: str | None) -> str:
    """The credential inside an ``Authorization`` value (``Bearer x``) or a bare one.

    Raises :class:`Unauthenticated` (reason ``missing``) when there is none.
    """
    if raw is None:
        raise Unauthenticated("credential required", reason="missing")
    parts = raw.split(None, 1)
    if parts and parts[0].lower() == _BEARER:
        parts = parts[1:]
    value = parts[0].strip() if parts else ""
    if not value:
        raise Unauthenticated("credential required", reason="missing")
    if len(value) > _MAX_CREDENTIAL:
        raise Unauthenticated("malformed credential", reason="malformed")
    return value


def _principal_of(record: StoredApiKey) -> Principal:
    expires_at = record.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)  # stored instants are UTC
    return Principal.build(
        name=record.principal, kind=record.principal_kind, grants=record.grants,
        credential_id=record.key_id, method="api_key", expires_at=expires_at,
    )


class Authenticator:
    """Authenticates credentials with a key lookup and, optionally, one OIDC issuer.

    ``anonymous``, when given, is returned for requests without any credential: the explicit
    single-user mode. It is logged as a warning when the authenticator is built.
    """

    def __init__(self, lookup: KeyLookup, oidc: OidcValidator | None = None,
                 settings: AuthenticatorSettings | None = None, *,
                 anonymous: Principal | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._lookup = lookup
        self._oidc = oidc
        self.settings = settings or AuthenticatorSettings()
        self._anonymous = anonymous
        self._clock = clock
        self._wall = wall
        self._keys: _Lru[_KeyEntry] = _Lru(self.settings.max_entries)
        self._tokens: _Lru[Principal] = _Lru(self.settings.max_entries)
        self._pending: dict[str, asyncio.Future[_KeyEntry]] = {}
        self._epoch = 0
        self.lookups = 0
        """Number of key lookups made (observable by tests and metrics)."""
        if anonymous is not None:
            log.warning("anonymous_access_enabled", principal=anonymous.name,
                        grants=[str(g) for g in anonymous.grants])

    def invalidate(self, key_id: str) -> None:
        """Forget what is cached about ``key_id`` (call on ``ApiKeyRevoked``/``ApiKeyIssued``)."""
        self._epoch += 1
        self._keys.pop(key_id)

    def clear(self) -> None:
        """Forget every cached key and token."""
        self._epoch += 1
        self._keys.clear()
        self._tokens.clear()

    async def authenticate(self, raw: str | None) -> Principal:
        """The principal behind ``raw``; :class:`Unauthenticated` if there is none valid."""
        if raw is None and self._anonymous is not None:
            return self._anonymous
        credential = credential_of(raw)
        if looks_like_api_key(credential):
            return await self._api_key(credential)
        if self._oidc is not None and looks_like_jwt(credential):
            return await self._bearer(credential)
        raise Unauthenticated("unrecognised credential", reason="malformed")

    async def _api_key(self, credential: str) -> Principal:
        parsed = parse_key(credential)
        entry = self._keys.get(parsed.key_id, self._clock())
        if entry is None:
            entry = await self._load(parsed.key_id)
        if not verify_secret(parsed, entry.record):
            raise Unauthenticated("invalid API key", reason="invalid", key_id=parsed.key_id)
        assert entry.record is not None and entry.principal is not None
        if entry.record.revoked:
            raise Unauthenticated("API key revoked", reason="revoked", key_id=parsed.key_id)
        if entry.principal.expired(self._wall()):
            raise Unauthenticated("API key expired", reason="expired", key_id=parsed.key_id)
        return entry.principal

    async def _load(self, key_id: str) -> _KeyEntry:
        pending = self._pending.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_KeyEntry] = asyncio.get_running_loop().create_future()
        self._pending[key_id] = future
        try:
            entry = await self._fetch(key_id)
            future.set_result(entry)
            return entry
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._pending[key_id]

    async def _fetch(self, key_id: str) -> _KeyEntry:
        for _ in range(2):
            epoch = self._epoch
            self.lookups += 1
            record = await self._lookup(key_id)
            if record is not None and record.key_id != key_id:
                record = None  # a lookup answering for another key must not authenticate
            entry = _KeyEntry(record, _principal_of(record) if record is not None else None)
            if epoch == self._epoch:
                ttl = self.settings.key_ttl_s if record else self.settings.negative_ttl_s
                self._keys.put(key_id, entry, self._clock() + ttl)
                return entry
        return entry  # invalidated twice while looking up: use the newest answer, uncached

    async def _bearer(self, token: str) -> Principal:
        assert self._oidc is not None
        principal = self._tokens.get(token, self._clock())
        if principal is None:
            principal = await self._oidc.validate(token)
            remaining = (principal.expires_ts or float("inf")) - self._wall()
            ttl = min(self.settings.token_ttl_s, remaining)
            if ttl > 0:
                self._tokens.put(token, principal, self._clock() + ttl)
        if principal.expired(self._wall()):
            raise Unauthenticated("bearer token expired", reason="expired")
        return principal
