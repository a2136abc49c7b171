"""OAuth2 / OpenID Connect bearer tokens: validate a JWT against one configured issuer.

JOSE library: PyJWT (``pyjwt``), the most widely deployed Python JWT implementation, typed,
with an explicit algorithm list required on every decode and guards against HMAC-with-a-public-
key confusion; keys are built from the issuer's JWKS with its ``PyJWK``. The JWKS itself is
fetched here with httpx, so timeouts, caching and rate limits are ours.

What is checked, in order (each failure is :class:`Unauthenticated` with a ``reason`` code):

1. shape: at most ``max_token_bytes``, three base64url segments, a JSON header (``malformed``);
2. algorithm: the header's ``alg`` must be in the allow-list (default RS256, ES256, EdDSA).
   ``none`` and every HMAC algorithm are refused even if configured: the verification key is
   public, and "HS256 keyed with the public key" is the classic confusion attack. A header with
   ``crit`` extensions is refused (RFC 7515 §4.1.11: we understand none). Keys embedded in the
   token (``jwk``, ``jku``, ``x5u``, ``x5c``) are never used (``algorithm``);
3. key: the JWKS key with the header's ``kid`` (a kid-less token only when the set holds one
   usable key); its type must fit the algorithm (RSA ≥ 2048 bits for RS*, P-256 for ES256,
   Ed25519 for EdDSA) and its ``use``/``alg``, when present, must agree (``unknown_key``);
4. signature (``signature``), then ``iss`` equal to the configured issuer (``issuer``), ``aud``
   containing the configured audience (``audience``), ``exp`` required and ``nbf``/``iat``
   honoured with ``leeway_s`` of clock skew (``expired``, ``not_yet_valid``), and the mapped
   principal claim present (``missing_claim``).

JWKS cache: keys are kept ``jwks_ttl_s``; an unknown ``kid`` (the issuer rotated its keys)
triggers a refetch at most once per ``jwks_min_refetch_s``, so a flood of tokens with random
kids cannot turn into a flood of requests to the issuer. If a refetch fails, the keys already
known keep working (an issuer outage does not log everyone out) and an unknown kid is
:class:`Unavailable` (503, retryable), not 401.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from libs.auth.authorize import Principal
from libs.auth.errors import Unauthenticated
from libs.events.errors import InvalidInput, Unavailable
from libs.events.security import Grant, PrincipalKind, Scope
from libs.runtime.logging import get_logger

__all__ = [
    "ALLOWED_ALGORITHMS",
    "ClaimMapping",
    "JwksCache",
    "OidcSettings",
    "OidcValidator",
    "looks_like_jwt",
    "map_grants",
]

log = get_logger(__name__)

ALLOWED_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                       "ES256", "ES384", "EdDSA"})
"""Every algorithm a configuration may list: asymmetric signatures only, never none/HS*."""

_KEY_TYPES: Final[dict[str, tuple[str, str | None]]] = {
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "EdDSA": ("OKP", "Ed25519"),
}
"""The JWK ``kty`` (and ``crv``) each algorithm must be verified with."""

_MIN_RSA_BITS: Final = 2048
_MAX_JWKS_BYTES: Final = 1 << 20


class ClaimMapping(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How token claims become a principal. Claim names may be dotted paths (``realm.roles``).

    Grants are the union of ``grants_claim`` (strings ``"<scope>:<namespace pattern>"``) and
    every namespace of ``namespaces_claim`` crossed with every scope that ``scopes_claim``
    (space-separated, OAuth style, or a list) maps to through ``scope_values``. A token that
    maps to no grant authenticates but is allowed nothing (403 on every request).
    """

    principal_claim: str = "sub"
    """Claim holding the principal's name."""
    principal_prefix: str = "oidc:"
    """Prepended to the name, so an OIDC subject can never pose as an API-key principal."""
    kind: PrincipalKind = "user"
    """Kind of every principal authenticated this way."""
    grants_claim: str | None = "mnemos_grants"
    """Claim with a list of ``scope:pattern`` strings (None: not used)."""
    namespaces_claim: str | None = None
    """Claim with a list (or space-separated string) of namespaces (None: not used)."""
    scopes_claim: str | None = "scope"
    """Claim with the OAuth scopes, mapped through ``scope_values``."""
    scope_values: dict[str, Scope] = msgspec.field(default_factory=lambda: {
        "mnemos:read": Scope.READ, "mnemos:write": Scope.WRITE,
        "mnemos:admin": Scope.ADMIN, "mnemos:audit": Scope.AUDIT,
    })
    """OAuth scope value -> Mnemos scope."""


class OidcSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of one trusted issuer."""

    issuer: str
    """Exact ``iss`` value (and, without ``jwks_url``, the base of the discovery document)."""
    audience: str
    """The ``aud`` value tokens must carry for this Mnemos deployment."""
    jwks_url: str | None = None
    """JWKS location; None = ``jwks_uri`` of ``<issuer>/.well-known/openid-configuration``."""
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    """Accepted ``alg`` values, a subset of :data:`ALLOWED_ALGORITHMS`."""
    leeway_s: float = 30.0
    """Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""
    jwks_ttl_s: float = 300.0
    """How long fetched keys are used before a refetch."""
    jwks_min_refetch_s: float = 30.0
    """Least time between two fetches caused by unknown kids or failures."""
    http_timeout_s: float = 5.0
    """Timeout of each JWKS or discovery request."""
    max_token_bytes: int = 16_384
    """Longest token accepted."""
    claims: ClaimMapping = ClaimMapping()
    """Claim mapping to the principal."""

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if bad or not self.algorithms:
            raise InvalidInput(f"OIDC algorithms must be a non-empty subset of "
                               f"{sorted(ALLOWED_ALGORITHMS)}; got {list(self.algorithms)}")
        if not (0 <= self.leeway_s <= 300):
            raise InvalidInput("OIDC leeway_s must be between 0 and 300 seconds")


def looks_like_jwt(credential: str) -> bool:
    """Whether ``credential`` has the shape of a compact JWS (three segments, JSON header)."""
    return credential.count(".") == 2 and credential.startswith("eyJ")


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _grant_of(text: str) -> Grant | None:
    try:
        return Grant.parse(text)
    except ValueError:
        return None


def map_grants(claims: Mapping[str, Any], mapping: ClaimMapping) -> tuple[Grant, ...]:
    """The grants a token's claims carry under ``mapping`` (invalid entries are skipped)."""
    grants: dict[str, Grant] = {}
    if mapping.grants_claim:
        for text in _strings(_claim(claims, mapping.grants_claim)):
            grant = _grant_of(text)
            if grant is not None:
                grants[str(grant)] = grant
    if mapping.namespaces_claim and mapping.scopes_claim:
        scopes = {mapping.scope_values[s] for s in _strings(_claim(claims, mapping.scopes_claim))
                  if s in mapping.scope_values}
        for ns in _strings(_claim(claims, mapping.namespaces_claim)):
            for scope in sorted(scopes):
                grant = _grant_of(f"{scope.value}:{ns}")
                if grant is not None:
                    grants[str(grant)] = grant
    return tuple(grants[k] for k in sorted(grants))


def _usable_key(jwk_dict: Mapping[str, Any], alg: str) -> jwt.PyJWK | None:
    """The key as a verifier for ``alg``, or None when its type, size or use do not fit."""
    kty, crv = _KEY_TYPES[alg]
    if jwk_dict.get("kty") != kty or (crv is not None and jwk_dict.get("crv") != crv):
        return None
    if jwk_dict.get("use", "sig") != "sig" or jwk_dict.get("alg", alg) != alg:
        return None
    try:
        key = jwt.PyJWK(dict(jwk_dict), algorithm=alg)
    except jwt.PyJWTError:
        return None
    material = key.key
    if kty == "RSA" and not (isinstance(material, rsa.RSAPublicKey)
                             and material.key_size >= _MIN_RSA_BITS):
        return None
    if kty == "EC" and not isinstance(material, ec.EllipticCurvePublicKey):
        return None
    if kty == "OKP" and not isinstance(material, ed25519.Ed25519PublicKey):
        return None
    return key


class JwksCache:
    """The issuer's signing keys, fetched with httpx and cached (see the module docstring)."""

    def __init__(self, settings: OidcSettings, client: httpx.AsyncClient | None = None,
                 clock: Any = time.monotonic) -> None:
        self._settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.http_timeout_s)
        self._owns_client = client is None
        self._clock = clock
        self._keys: list[Mapping[str, Any]] = []
        self._verifiers: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._jwks_url = settings.jwks_url
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Number of JWKS fetches made (observable by tests and metrics)."""

    async def aclose(self) -> None:
        """Close the HTTP client if this cache created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _get_json(self, url: str) -> Any:
        try:
            response = await self._client.get(url, timeout=self._settings.http_timeout_s,
                                              follow_redirects=False)
        except httpx.HTTPError as exc:
            raise Unavailable(f"OIDC issuer unreachable: {type(exc).__name__}") from None
        if response.status_code != httpx.codes.OK or len(response.content) > _MAX_JWKS_BYTES:
            raise Unavailable(f"OIDC issuer answered {response.status_code} for {url}")
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise Unavailable(f"OIDC issuer sent malformed JSON at {url}") from None

    async def _discover(self) -> str:
        doc = await self._get_json(
            self._settings.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if not isinstance(doc, dict) or doc.get("issuer") != self._settings.issuer:
            raise Unavailable("OIDC discovery document does not name the configured issuer")
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise Unavailable("OIDC discovery document has no usable jwks_uri")
        return uri

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        if self._jwks_url is None:
            self._jwks_url = await self._discover()
        doc = await self._get_json(self._jwks_url)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise Unavailable("JWKS document has no 'keys' list")
        self._keys = [k for k in keys if isinstance(k, dict)]
        self._verifiers.clear()
        self._fetched_at = self._attempted_at
        log.info("oidc_jwks_fetched", keys=len(self._keys), url=self._jwks_url)

    def _lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        cached = self._verifiers.get((kid, alg))
        if cached is not None:
            return cached
        if kid is None:
            usable = [k for k in (_usable_key(d, alg) for d in self._keys) if k is not None]
            found = usable[0] if len(usable) == 1 else None
        else:
            found = next((k for k in (_usable_key(d, alg) for d in self._keys
                                      if d.get("kid") == kid) if k is not None), None)
        if found is not None:
            self._verifiers[(kid, alg)] = found
        return found

    def _may_refetch(self) -> bool:
        last = self._attempted_at
        return last is None or self._clock() - last >= self._settings.jwks_min_refetch_s

    async def _refresh(self, reason: str) -> None:
        """Refetch unless another task just did; keep the old keys if the issuer fails."""
        async with self._lock:
            if not self._may_refetch():
                return
            try:
                await self._fetch()
            except Unavailable as exc:
                log.warning("oidc_jwks_fetch_failed", reason=reason, error=exc.message)
                if self._fetched_at is None:
                    raise

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key for a token header, refetching on expiry or unknown kid."""
        stale = self._fetched_at is None or (
            self._clock() - self._fetched_at >= self._settings.jwks_ttl_s)
        if stale and self._may_refetch():
            await self._refresh("ttl")
        key = self._lookup(kid, alg)
        if key is None and self._may_refetch():
            await self._refresh("unknown_kid")
            key = self._lookup(kid, alg)
        if key is None:
            raise Unauthenticated("token signed with an unknown key", reason="unknown_key")
        return key


_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.InvalidSignatureError, "signature"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidAlgorithmError, "algorithm"),
    (jwt.DecodeError, "malformed"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    return next((reason for cls, reason in _REASONS if isinstance(exc, cls)), "invalid")


class OidcValidator:
    """Validates bearer JWTs of one issuer and maps them to a :class:`Principal`."""

    def __init__(self, settings: OidcSettings, jwks: JwksCache | None = None) -> None:
        self.settings = settings
        self.jwks = jwks or JwksCache(settings)

    async def aclose(self) -> None:
        """Release the JWKS cache's HTTP client."""
        await self.jwks.aclose()

    def _header(self, token: str) -> dict[str, Any]:
        if len(token) > self.settings.max_token_bytes or not token.isascii():
            raise Unauthenticated("malformed bearer token", reason="malformed")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, binascii.Error, ValueError):
            raise Unauthenticated("malformed bearer token", reason="malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms or "crit" in header:
            raise Unauthenticated("token algorithm not accepted", reason="algorithm")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("malformed bearer token", reason="malformed")
        return header

    async def validate(self, token: str) -> Principal:
        """The principal of a valid token; :class:`Unauthenticated` for anything else."""
        header = self._header(token)
        alg: str = header["alg"]
        key = await self.jwks.key_for(header.get("kid"), alg)
        mapping = self.settings.claims
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.settings.audience,
                issuer=self.settings.issuer, leeway=self.settings.leeway_s,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            reason = _reason(exc)
            log.info("oidc_token_refused", reason=reason, kid=header.get("kid"))
            raise Unauthenticated("bearer token refused", reason=reason) from None
        name = _claim(claims, mapping.principal_claim)
        if not isinstance(name, str) or not name or not name.isprintable():
            raise Unauthenticated("bearer token has no principal claim", reason="missing_claim")
        try:
            # The leeway that let the token pass applies to the cached principal as well.
            expires_at = datetime.fromtimestamp(float(claims["exp"]) + self.settings.leeway_s, UTC)
        except (OverflowError, ValueError, OSError):
            raise Unauthenticated("bearer token expiry out of range", reason="malformed") from None
        jti = claims.get("jti")
        return Principal.build(
            name=f"{mapping.principal_prefix}{name}"[:256], kind=mapping.kind,
            grants=map_grants(claims, mapping),
            credential_id=jti if isinstance(jti, str) and jti.isprintable() else f"oidc:{name}",
            method="oidc", expires_at=expires_at,
        )
