"""Wire structs of security: scopes, grants and the API-key lifecycle events.

A grant is a scope on a namespace pattern. Issuing and revoking an API key are events in the
reserved ``system`` namespace (aggregate ``apikey``, id = the key id), so both are on the audit
chain; their payloads carry the key's *hash*, never its secret.

Decisions written down here once:

- A namespace pattern is an explicit namespace (``team-a``) or a prefix ending in ``*``
  (``team-*``; ``*`` alone is every namespace). Patterns never match a reserved namespace:
  ``system`` must be granted by name (see :mod:`libs.auth.authorize`).
- ``Scope`` values are lower-case strings on the wire, so a grant reads ``write:team-*``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "AGGREGATE_API_KEY",
    "HASH_ALG_BLAKE3_V1",
    "ApiKeyIssuedData",
    "ApiKeyRevokedData",
    "CreateKey",
    "Grant",
    "KeyCreated",
    "KeyId",
    "KeyList",
    "KeyRevoked",
    "KeyView",
    "ListKeys",
    "NamespacePattern",
    "PrincipalKind",
    "PrincipalName",
    "RevokeKey",
    "Scope",
]

AGGREGATE_API_KEY: Final = "apikey"
"""Aggregate of API-key events: ``mnemos.evt.system.apikey.<key_id>``."""

HASH_ALG_BLAKE3_V1: Final = "blake3-derive-v1"
"""Name of the secret hash recorded with each key (see :mod:`libs.auth.keys`), so that a later
algorithm can coexist with keys issued under this one."""

NamespacePattern = Annotated[
    str, msgspec.Meta(pattern=r"^(?:[a-z0-9_-]{1,64}|[a-z0-9_-]{0,63}\*)$")
]
"""An explicit namespace, or a prefix then ``*`` (``team-*``; ``*`` = all but reserved ones)."""

KeyId = Annotated[str, msgspec.Meta(pattern=r"^[a-z2-7]{16}$")]
"""The public id of an API key: 16 lower-case base32 characters (80 random bits)."""

PrincipalName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
"""Who a credential stands for (a user, service or agent name; an OIDC subject). No control
characters, so it can be logged and stored as-is."""

PrincipalKind = Literal["user", "service", "agent"]
"""What kind of party a principal is."""


class Scope(enum.StrEnum):
    """What a grant allows on its namespaces.

    ``admin`` implies ``write``, which implies ``read``; ``audit`` (reading the audit chain,
    proofs and key events) stands apart and is implied by nothing (see
    :mod:`libs.auth.authorize`).
    """

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    AUDIT = "audit"


class Grant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scope on one namespace pattern."""

    scope: Scope
    namespace: NamespacePattern

    def __str__(self) -> str:
        return f"{self.scope.value}:{self.namespace}"

    @classmethod
    def parse(cls, text: str) -> Grant:
        """``"<scope>:<namespace pattern>"`` (``write:team-a``, ``read:team-*``) as a grant;
        :class:`ValueError` naming the accepted forms otherwise."""
        scope, _, pattern = text.partition(":")
        try:
            return msgspec.convert({"scope": scope, "namespace": pattern}, cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not a grant {text!r} (want <scope>:<namespace>, scope one of "
                             f"{', '.join(s.value for s in Scope)}): {exc}") from None


class ApiKeyIssuedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`ApiKeyIssued`: everything needed to verify the key later, no secret.

    ``prefix`` is the visible part of the key (``mnk_<key_id>``), shown in listings so an
    operator recognises a key without ever seeing its secret again. ``secret_hash`` is the hex
    digest named by ``hash_alg``. ``expires_at`` None means the key does not expire.
    """

    key_id: KeyId
    prefix: str
    secret_hash: str
    hash_alg: str = HASH_ALG_BLAKE3_V1
    principal: PrincipalName
    principal_kind: PrincipalKind = "agent"
    grants: tuple[Grant, ...]
    expires_at: datetime | None = None
    issued_by: PrincipalName
    at: datetime


class ApiKeyRevokedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Payload of :class:`ApiKeyRevoked`: which key, why, and who revoked it."""

    key_id: KeyId
    reason: Annotated[str, msgspec.Meta(max_length=1024)]
    by: PrincipalName


# --- key management (operations create_key, revoke_key, list_keys; namespace ``system``) ------


class CreateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``create_key``: a new API key for ``principal`` with ``grants`` (shown once)."""

    principal: PrincipalName
    kind: PrincipalKind = "agent"
    grants: tuple[Grant, ...] = msgspec.field(default_factory=tuple)
    expires_at: datetime | None = None


class RevokeKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``revoke_key``: the key stops authenticating anyone, on every gateway within seconds."""

    key_id: KeyId
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class ListKeys(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``list_keys``: every key, without secrets."""


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """A key as an operator sees it: never its secret."""

    key_id: str
    prefix: str
    principal: str
    kind: PrincipalKind
    grants: tuple[Grant, ...]
    expires_at: datetime | None
    issued_by: str
    issued_at: datetime
    revoked: bool


class KeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """``create_key``: the key itself (shown this once; only its hash is kept) and its record."""

    key: str
    view: KeyView
    seq: int


class KeyRevoked(msgspec.Struct, frozen=True, kw_only=True):
    """``revoke_key``: which key, and the sequence of its revocation event."""

    key_id: str
    seq: int


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    """``list_keys``: keys by id."""

    keys: list[KeyView]
