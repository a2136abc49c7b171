"""Authorization: may this principal do scope S on namespace N? (pure, no I/O)

The rules, decided once:

- **Implication**: ``admin`` ⇒ ``write`` ⇒ ``read``. Whoever may change a namespace may read it,
  and whoever administers it (keys, erasure) may change it.
- **Audit stands apart**: ``audit`` (the hash chain, proofs, key events, verification) is neither
  implied by ``admin`` nor implies ``read``. Separation of duties: the party that verifies the
  record is not automatically the party that writes it, and an auditor proves integrity without
  being handed every tenant's content. A credential that needs both carries both grants (the
  local admin credential of ``mnemos up`` does).
- **Patterns**: a grant's namespace is a name (``team-a``) or a prefix ending in ``*``
  (``team-*``, ``*``). A prefix grant covers namespaces created later with that prefix.
- **Reserved namespaces** (``system``) are never covered by a pattern, not even ``*``: they need
  a grant that names them, and only ``admin`` or ``audit`` grants count there (``admin`` on
  ``system`` is how key management commands are authorized; services write ``system`` through
  their own broker identity, not through a principal).
- **Expiry** is checked again here, so a principal cached past its credential's expiry is
  refused (401), not served.

Errors: :class:`Unauthenticated` (401) when the principal is expired; :class:`Forbidden` (403)
when the grant is missing. The message names the scope and namespace asked for, never the
principal's other grants.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Final, Literal

import msgspec

from libs.auth.errors import Forbidden, Unauthenticated
from libs.events.security import Grant, PrincipalKind, Scope
from libs.events.tokens import validate_namespace

__all__ = [
    "RESERVED_NAMESPACES",
    "AuthMethod",
    "Principal",
    "authorize",
    "grant_covers",
    "is_allowed",
]

RESERVED_NAMESPACES: Final = frozenset({"system"})
"""Namespaces Mnemos uses itself; only explicitly named ``admin``/``audit`` grants reach them."""

AuthMethod = Literal["api_key", "oidc", "anonymous"]
"""How a principal was authenticated (``anonymous`` only where explicitly configured)."""

_IMPLIED_BY: Final[dict[Scope, frozenset[Scope]]] = {
    Scope.READ: frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.ADMIN}),
    Scope.ADMIN: frozenset({Scope.ADMIN}),
    Scope.AUDIT: frozenset({Scope.AUDIT}),
}
"""For each requested scope, the granted scopes that satisfy it."""

_RESERVED_SCOPES: Final = frozenset({Scope.ADMIN, Scope.AUDIT})


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated party: who, what kind, what it may do, and until when.

    ``credential_id`` is the API key id or the OIDC ``jti``/subject, recorded for audit;
    ``expires_at`` is the credential's expiry (None = none); ``expires_ts`` is the same
    instant as a POSIX timestamp, precomputed so the per-command check is one comparison.
    """

    name: str
    kind: PrincipalKind
    grants: tuple[Grant, ...]
    credential_id: str
    method: AuthMethod
    expires_at: datetime | None = None
    expires_ts: float | None = None

    @classmethod
    def build(cls, *, name: str, kind: PrincipalKind, grants: tuple[Grant, ...],
              credential_id: str, method: AuthMethod,
              expires_at: datetime | None = None) -> Principal:
        """A principal with ``expires_ts`` derived from ``expires_at`` (timezone-aware)."""
        ts = expires_at.timestamp() if expires_at is not None else None
        return cls(name=name, kind=kind, grants=grants, credential_id=credential_id,
                   method=method, expires_at=expires_at, expires_ts=ts)

    def expired(self, now_ts: float | None = None) -> bool:
        """Whether the credential behind this principal has expired at ``now_ts`` (POSIX)."""
        if self.expires_ts is None:
            return False
        return (time.time() if now_ts is None else now_ts) >= self.expires_ts


def grant_covers(grant: Grant, scope: Scope, namespace: str) -> bool:
    """Whether one grant allows ``scope`` on ``namespace`` (a validated namespace token)."""
    if grant.scope not in _IMPLIED_BY[scope]:
        return False
    pattern = grant.namespace
    if namespace in RESERVED_NAMESPACES:
        return pattern == namespace and grant.scope in _RESERVED_SCOPES
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    return pattern == namespace


def is_allowed(principal: Principal, scope: Scope, namespace: str,
               now_ts: float | None = None) -> bool:
    """Whether ``principal`` may do ``scope`` on ``namespace`` now (False if expired)."""
    if principal.expired(now_ts):
        return False
    return any(grant_covers(g, scope, namespace) for g in principal.grants)


def authorize(principal: Principal, scope: Scope, namespace: str,
              now_ts: float | None = None) -> None:
    """Return if allowed; raise :class:`Unauthenticated` if expired, else :class:`Forbidden`.

    ``namespace`` is validated first (:class:`~libs.events.errors.InvalidInput` for a bad
    token), so a pattern character such as ``*`` in a request can never widen a check.
    """
    validate_namespace(namespace)
    if principal.expired(now_ts):
        raise Unauthenticated("credential expired", reason="expired")
    for grant in principal.grants:
        if grant_covers(grant, scope, namespace):
            return
    raise Forbidden(f"{scope.value} on namespace {namespace!r} is not granted",
                    scope=scope.value, namespace=namespace)
