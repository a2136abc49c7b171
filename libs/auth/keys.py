"""API keys: generation, parsing, hashing and verification (pure, no I/O).

A key reads ``mnk_<key_id>_<secret>``:

- ``mnk_`` marks it as a Mnemos key (secret scanners and people recognise it);
- ``key_id`` is 16 lower-case base32 characters (80 random bits): public, the lookup handle,
  shown in listings and logs together with the prefix (``mnk_<key_id>``);
- ``secret`` is 43 base64url characters: 256 bits from :mod:`secrets`, shown once at issuance.

Storage: only ``blake3(derive_key="mnemos api key v1", key_id ‖ 0x00 ‖ secret)`` is kept, in
the ``ApiKeyIssued`` event and the read model. A slow password hash (argon2, bcrypt, scrypt)
exists to stretch *guessable* secrets; a 256-bit random secret cannot be guessed, so stretching
buys nothing and would cost milliseconds per command (the target is 0.1 ms). A fast
cryptographic hash is the standard choice for high-entropy tokens: preimage resistance alone
keeps a leaked hash useless. BLAKE3 is the hash Mnemos already uses everywhere; its key
derivation mode gives domain separation, and hashing the key id with the secret binds each
hash to its record. No server-side pepper: the hash lives on an append-only stream forever and
a lost pepper would invalidate every key.

Timing: parsing checks the shape (length and alphabet) of a string the caller already knows,
so its timing reveals nothing secret. The only secret-dependent step, comparing digests, uses
:func:`hmac.compare_digest`. An unknown key id is answered after hashing a dummy secret, so
"unknown id" and "wrong secret" cost the same; key ids are not secret anyway.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from datetime import datetime
from typing import Final

import blake3
import msgspec

from libs.auth.errors import Unauthenticated
from libs.events.security import (
    HASH_ALG_BLAKE3_V1,
    ApiKeyIssuedData,
    Grant,
    PrincipalKind,
)

__all__ = [
    "KEY_PREFIX",
    "SECRET_BYTES",
    "IssuedKey",
    "ParsedKey",
    "StoredApiKey",
    "generate_key",
    "hash_secret",
    "looks_like_api_key",
    "parse_key",
    "verify_secret",
]

KEY_PREFIX: Final = "mnk_"
"""First characters of every Mnemos API key."""

SECRET_BYTES: Final = 32
"""Random bytes in a key's secret (256 bits)."""

_KEY_ID_BYTES: Final = 10
_KEY_ID_LENGTH: Final = 16
_SECRET_LENGTH: Final = 43  # base64url of 32 bytes without padding
_KEY_LENGTH: Final = len(KEY_PREFIX) + _KEY_ID_LENGTH + 1 + _SECRET_LENGTH
_KEY_RE: Final = re.compile(r"mnk_([a-z2-7]{16})_([A-Za-z0-9_-]{43})")
_HASH_CONTEXT: Final = "mnemos 2025-01 api key secret v1"
_DUMMY_ID: Final = "a" * _KEY_ID_LENGTH


class ParsedKey(msgspec.Struct, frozen=True):
    """A syntactically valid key, split into its public id and its secret."""

    key_id: str
    secret: str

    @property
    def prefix(self) -> str:
        """The visible part, ``mnk_<key_id>``."""
        return f"{KEY_PREFIX}{self.key_id}"


class IssuedKey(msgspec.Struct, frozen=True):
    """A freshly generated key: the full string to show once, and what to store."""

    key: str
    key_id: str
    prefix: str
    secret_hash: str


class StoredApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """What the key lookup returns for a key id: the issued record and whether it was revoked.

    Built by the lead's read model or event fold from ``ApiKeyIssued`` / ``ApiKeyRevoked``.
    """

    key_id: str
    secret_hash: str
    hash_alg: str = HASH_ALG_BLAKE3_V1
    principal: str
    principal_kind: PrincipalKind = "agent"
    grants: tuple[Grant, ...]
    expires_at: datetime | None = None
    revoked: bool = False

    @classmethod
    def from_issued(cls, data: ApiKeyIssuedData, revoked: bool = False) -> StoredApiKey:
        """The stored form of an ``ApiKeyIssued`` payload."""
        return cls(
            key_id=data.key_id, secret_hash=data.secret_hash, hash_alg=data.hash_alg,
            principal=data.principal, principal_kind=data.principal_kind, grants=data.grants,
            expires_at=data.expires_at, revoked=revoked,
        )


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")


def generate_key() -> IssuedKey:
    """A new key with a fresh id and a 256-bit secret (shown to the caller once)."""
    key_id = _b32(secrets.token_bytes(_KEY_ID_BYTES))
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    return IssuedKey(
        key=f"{KEY_PREFIX}{key_id}_{secret}", key_id=key_id, prefix=f"{KEY_PREFIX}{key_id}",
        secret_hash=hash_secret(key_id, secret),
    )


def looks_like_api_key(credential: str) -> bool:
    """Whether ``credential`` claims to be a Mnemos key (its prefix), valid or not."""
    return credential.startswith(KEY_PREFIX)


def parse_key(credential: str) -> ParsedKey:
    """Split a key into id and secret, or raise :class:`Unauthenticated` (reason ``malformed``).

    The length is checked before the pattern, so a huge input costs nothing.
    """
    if len(credential) != _KEY_LENGTH:
        raise Unauthenticated("malformed API key", reason="malformed")
    match = _KEY_RE.fullmatch(credential)
    if match is None:
        raise Unauthenticated("malformed API key", reason="malformed")
    return ParsedKey(match.group(1), match.group(2))


def hash_secret(key_id: str, secret: str) -> str:
    """Hex digest stored for a key (see the module docstring for the construction)."""
    material = f"{key_id}\x00{secret}".encode()
    return blake3.blake3(material, derive_key_context=_HASH_CONTEXT).hexdigest()


def verify_secret(parsed: ParsedKey, stored: StoredApiKey | None) -> bool:
    """Whether ``parsed`` matches ``stored``, in time independent of where digests differ.

    ``stored`` None (unknown key id) still hashes, so it costs what a wrong secret costs.
    """
    if stored is None or stored.hash_alg != HASH_ALG_BLAKE3_V1:
        hash_secret(_DUMMY_ID, parsed.secret)
        return False
    candidate = hash_secret(parsed.key_id, parsed.secret)
    return hmac.compare_digest(candidate.encode(), stored.secret_hash.encode())
