"""OIDC bearer tokens against a local issuer (real HTTP on 127.0.0.1, self-signed keys)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from libs.auth.errors import Unauthenticated
from libs.auth.oidc import ClaimMapping, JwksCache, OidcSettings, OidcValidator, looks_like_jwt
from libs.events.errors import InvalidInput, Unavailable
from libs.events.security import Scope
from tests.support.oidc_issuer import LocalIssuer, SigningKey, local_issuer, new_signing_key


class Clock:
    """A monotonic clock the test moves by hand (for TTLs and refetch rate limits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {
        "rsa": new_signing_key("rsa-1", "RS256"),
        "ec": new_signing_key("ec-1", "ES256"),
        "ed": new_signing_key("ed-1", "EdDSA"),
        "rsa2": new_signing_key("rsa-2", "RS256"),
    }


@pytest.fixture
def issuer(keys: dict[str, SigningKey]) -> Iterator[LocalIssuer]:
    with local_issuer() as state:
        state.publish(keys["rsa"], keys["ec"], keys["ed"])
        yield state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def validator(issuer: LocalIssuer, clock: Clock) -> AsyncIterator[OidcValidator]:
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos", jwks_url=issuer.jwks_url)
    v = OidcValidator(settings, JwksCache(settings, clock=clock))
    try:
        yield v
    finally:
        await v.aclose()


async def refused(validator: OidcValidator, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        await validator.validate(token)
    assert info.value.http_status == 401
    reason: str = info.value.detail["reason"]
    return reason


@pytest.mark.parametrize("name", ["rsa", "ec", "ed"])
async def test_valid_tokens_of_each_algorithm_map_to_a_principal(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey],
        name: str) -> None:
    token = issuer.token(keys[name], {"sub": "alice", "jti": "t-1",
                                      "mnemos_grants": ["write:team-*", "audit:system",
                                                        "bogus", "read:BAD", "root:x"]})
    p = await validator.validate(token)
    assert p.name == "oidc:alice" and p.kind == "user" and p.method == "oidc"
    assert p.credential_id == "t-1"
    assert sorted(str(g) for g in p.grants) == ["audit:system", "write:team-*"]
    assert p.expires_ts is not None and p.expires_ts > time.time()


async def test_wrong_issuer_audience_signature_and_expiry_are_refused(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey]) -> None:
    rsa = keys["rsa"]
    assert await refused(validator, issuer.token(rsa, {"iss": "https://evil.example"})) == "issuer"
    assert await refused(validator, issuer.token(rsa, audience="other-app")) == "audience"
    assert await refused(validator, issuer.token(rsa, lifetime_s=-120)) == "expired"
    assert await refused(validator, issuer.token(rsa, {"nbf": int(time.time()) + 600})) \
        == "not_yet_valid"
    # Same kid, other private key: the signature does not verify.
    impostor = SigningKey(rsa.kid, "RS256", keys["rsa2"].private, rsa.jwk)
    assert await refused(validator, issuer.token(impostor)) == "signature"
    # A payload changed after signing.
    head, _, sig = issuer.token(rsa).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"iss": issuer.issuer, "aud": "mnemos", "sub": "root",
         "exp": int(time.time()) + 60}).encode()).rstrip(b"=").decode()
    assert await refused(validator, f"{head}.{forged}.{sig}") == "signature"


async def test_small_clock_skew_is_tolerated(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey]) -> None:
    p = await validator.validate(issuer.token(keys["rsa"], lifetime_s=-10))
    assert p.name == "oidc:alice"
    assert not p.expired()  # the leeway carries over to the principal


async def test_required_claims(validator: OidcValidator, issuer: LocalIssuer,
                               keys: dict[str, SigningKey]) -> None:
    now = int(time.time())
    no_exp = jwt.encode({"iss": issuer.issuer, "aud": "mnemos", "sub": "a"},
                        keys["rsa"].private, algorithm="RS256", headers={"kid": "rsa-1"})
    assert await refused(validator, no_exp) == "missing_claim"
    no_sub = jwt.encode({"iss": issuer.issuer, "aud": "mnemos", "exp": now + 60},
                        keys["rsa"].private, algorithm="RS256", headers={"kid": "rsa-1"})
    assert await refused(validator, no_sub) == "missing_claim"
    control = issuer.token(keys["rsa"], {"sub": "a\x00b"})
    assert await refused(validator, control) == "missing_claim"
    far = issuer.token(keys["rsa"], {"exp": 10**20})
    assert await refused(validator, far) == "malformed"


async def test_alg_none_and_hmac_with_the_public_key_are_refused(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey]) -> None:
    claims = {"iss": issuer.issuer, "aud": "mnemos", "sub": "root",
              "exp": int(time.time()) + 60}
    none = jwt.encode(claims, "", algorithm="none", headers={"kid": "rsa-1"})
    assert await refused(validator, none) == "algorithm"
    pem = keys["rsa"].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # Forge HS256 by hand (PyJWT itself refuses a PEM as an HMAC secret).
    import hashlib
    import hmac
    head = base64.urlsafe_b64encode(json.dumps(
        {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(
        hmac.new(pem, head + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
    assert await refused(validator, (head + b"." + body + b"." + sig).decode()) == "algorithm"
    crit = issuer.token(keys["rsa"], headers={"crit": ["exp"]})
    assert await refused(validator, crit) in {"algorithm", "malformed"}  # PyJWT checks crit too


async def test_key_type_must_fit_the_algorithm(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey]) -> None:
    # An RS256 token whose kid names the EC key: never verified with a mismatched key.
    claims = {"iss": issuer.issuer, "aud": "mnemos", "sub": "a", "exp": int(time.time()) + 60}
    mixed = jwt.encode(claims, keys["rsa"].private, algorithm="RS256", headers={"kid": "ec-1"})
    assert await refused(validator, mixed) == "unknown_key"
    es_on_ed = jwt.encode(claims, keys["ec"].private, algorithm="ES256",
                          headers={"kid": "ed-1"})
    assert await refused(validator, es_on_ed) == "unknown_key"


def test_settings_refuse_symmetric_or_none_algorithms() -> None:
    for bad in (("HS256",), ("none",), ("RS256", "HS512"), ()):
        with pytest.raises(InvalidInput):
            OidcSettings(issuer="https://i", audience="a", algorithms=bad)
    with pytest.raises(InvalidInput):
        OidcSettings(issuer="https://i", audience="a", leeway_s=3600)


async def test_disallowed_algorithm_for_this_deployment(
        issuer: LocalIssuer, keys: dict[str, SigningKey], clock: Clock) -> None:
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos", jwks_url=issuer.jwks_url,
                            algorithms=("ES256",))
    v = OidcValidator(settings, JwksCache(settings, clock=clock))
    assert await refused(v, issuer.token(keys["rsa"])) == "algorithm"
    assert (await v.validate(issuer.token(keys["ec"]))).name == "oidc:alice"
    await v.aclose()


MALFORMED = ["", "abc", "a.b.c", "eyJ.eyJ.x", "eyJhbGciOiJSUzI1NiJ9", "eyJ!!.eyJ.sig",
             "eyJhbGciOiJSUzI1NiJ9.\x00.x", "é.é.é", "eyJ" + "A" * 20_000 + ".e.s",
             base64.urlsafe_b64encode(b'{"alg": 5}').decode() + ".e.s",
             base64.urlsafe_b64encode(b'["RS256"]').decode() + ".e.s",
             base64.urlsafe_b64encode(b'{"alg":"RS256","kid":7}').decode() + ".e.s"]


@pytest.mark.parametrize("token", MALFORMED)
async def test_malformed_tokens_are_refused(validator: OidcValidator, token: str) -> None:
    assert await refused(validator, token) in {"malformed", "algorithm"}


async def test_unknown_kid_refetches_then_rotation_is_picked_up(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey],
        clock: Clock) -> None:
    await validator.validate(issuer.token(keys["rsa"]))
    assert issuer.requests["/jwks.json"] == 1
    await validator.validate(issuer.token(keys["rsa"]))
    assert issuer.requests["/jwks.json"] == 1  # cached
    # The issuer rotates to rsa-2; a token with the new kid arrives.
    issuer.publish(keys["rsa2"])
    clock.now += 31  # beyond the refetch rate limit
    p = await validator.validate(issuer.token(keys["rsa2"]))
    assert p.name == "oidc:alice"
    assert issuer.requests["/jwks.json"] == 2
    # The retired key is gone from the new set.
    assert await refused(validator, issuer.token(keys["rsa"])) == "unknown_key"


async def test_refetch_on_unknown_kids_is_rate_limited(
        validator: OidcValidator, issuer: LocalIssuer, keys: dict[str, SigningKey],
        clock: Clock) -> None:
    await validator.validate(issuer.token(keys["rsa"]))
    for i in range(20):
        stranger = new_signing_key(f"random-{i}", "EdDSA")
        assert await refused(validator, issuer.token(stranger)) == "unknown_key"
    assert issuer.requests["/jwks.json"] == 1
    clock.now += 31
    assert await refused(validator, issuer.token(new_signing_key("late", "EdDSA"))) \
        == "unknown_key"
    assert issuer.requests["/jwks.json"] == 2


async def test_ttl_expiry_refetches(validator: OidcValidator, issuer: LocalIssuer,
                                    keys: dict[str, SigningKey], clock: Clock) -> None:
    await validator.validate(issuer.token(keys["ec"]))
    clock.now += 299
    await validator.validate(issuer.token(keys["ec"]))
    assert issuer.requests["/jwks.json"] == 1
    clock.now += 2
    await validator.validate(issuer.token(keys["ec"]))
    assert issuer.requests["/jwks.json"] == 2


async def test_issuer_outage(validator: OidcValidator, issuer: LocalIssuer,
                             keys: dict[str, SigningKey], clock: Clock) -> None:
    issuer.down = True
    with pytest.raises(Unavailable):
        await validator.validate(issuer.token(keys["rsa"]))
    issuer.down = False
    clock.now += 31
    await validator.validate(issuer.token(keys["rsa"]))
    # Down again past the TTL: known keys keep working, unknown kids are refused.
    issuer.down = True
    clock.now += 400
    assert (await validator.validate(issuer.token(keys["ed"]))).name == "oidc:alice"
    assert await refused(validator, issuer.token(keys["rsa2"])) == "unknown_key"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_keys_not_for_signature_or_too_weak_are_ignored(
        issuer: LocalIssuer, clock: Clock) -> None:
    enc = new_signing_key("enc", "RS256")
    weak = new_signing_key("weak", "RS256", rsa_bits=1024)
    oct_key = {"kty": "oct", "kid": "oct", "k": "c2VjcmV0", "alg": "HS256"}
    issuer.publish(extra=[{**enc.jwk, "use": "enc"}, weak.jwk, oct_key, {"kty": "RSA"}, "x"])  # type: ignore[list-item]
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos", jwks_url=issuer.jwks_url)
    v = OidcValidator(settings, JwksCache(settings, clock=clock))
    assert await refused(v, issuer.token(enc)) == "unknown_key"
    assert await refused(v, issuer.token(weak)) == "unknown_key"
    await v.aclose()


async def test_discovery_and_a_discovery_document_for_another_issuer(
        issuer: LocalIssuer, keys: dict[str, SigningKey], clock: Clock) -> None:
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos")
    v = OidcValidator(settings, JwksCache(settings, clock=clock))
    assert (await v.validate(issuer.token(keys["rsa"]))).name == "oidc:alice"
    assert issuer.requests["/.well-known/openid-configuration"] == 1
    await v.aclose()
    issuer.discovery_issuer = "https://somebody-else.example"
    v2 = OidcValidator(settings, JwksCache(settings, clock=clock))
    with pytest.raises(Unavailable):
        await v2.validate(issuer.token(keys["rsa"]))
    await v2.aclose()


async def test_kidless_token_only_with_a_single_usable_key(
        issuer: LocalIssuer, keys: dict[str, SigningKey], clock: Clock) -> None:
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos", jwks_url=issuer.jwks_url)
    claims = {"iss": issuer.issuer, "aud": "mnemos", "sub": "a", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, keys["rsa"].private, algorithm="RS256")
    v = OidcValidator(settings, JwksCache(settings, clock=clock))
    assert (await v.validate(token)).name == "oidc:a"  # one RSA key among rsa/ec/ed
    await v.aclose()
    issuer.publish(keys["rsa"], keys["rsa2"])
    v2 = OidcValidator(settings, JwksCache(settings, clock=clock))
    assert await refused(v2, token) == "unknown_key"
    await v2.aclose()


async def test_claim_mapping_of_namespaces_and_scopes(
        issuer: LocalIssuer, keys: dict[str, SigningKey], clock: Clock) -> None:
    mapping = ClaimMapping(principal_claim="profile.email", principal_prefix="", kind="agent",
                           grants_claim=None, namespaces_claim="mnemos.ns",
                           scopes_claim="scope")
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos", jwks_url=issuer.jwks_url,
                            claims=mapping)
    v = OidcValidator(settings, JwksCache(settings, clock=clock))
    token = issuer.token(keys["ed"], {
        "profile": {"email": "bot@example.com"}, "mnemos": {"ns": ["team-a", "Bad NS", "b"]},
        "scope": "openid mnemos:read mnemos:write unknown"})
    p = await v.validate(token)
    assert p.name == "bot@example.com" and p.kind == "agent"
    assert sorted(str(g) for g in p.grants) == ["read:b", "read:team-a", "write:b",
                                                "write:team-a"]
    assert p.credential_id == "oidc:bot@example.com"
    nothing = await v.validate(issuer.token(keys["ed"], {"profile": {"email": "x"}}))
    assert nothing.grants == ()
    await v.aclose()


def test_looks_like_jwt() -> None:
    assert looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJ.sig")
    assert not looks_like_jwt("mnk_aaaa_bbbb")
    assert not looks_like_jwt("eyJ.only-two")
    assert Scope("read") is Scope.READ
