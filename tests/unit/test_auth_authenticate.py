"""The authenticator: API keys through a lookup, bearer JWTs through OIDC, caches, revocation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from libs.auth.authenticate import Authenticator, AuthenticatorSettings, credential_of
from libs.auth.authorize import Principal
from libs.auth.errors import Unauthenticated
from libs.auth.keys import IssuedKey, StoredApiKey, generate_key, parse_key
from libs.auth.oidc import JwksCache, OidcSettings, OidcValidator
from libs.events.errors import Unavailable
from libs.events.security import Grant, Scope
from tests.support.oidc_issuer import LocalIssuer, local_issuer, new_signing_key


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class KeyStore:
    """The stored key records of a deployment, shared by several gateway instances."""

    def __init__(self) -> None:
        self.records: dict[str, StoredApiKey] = {}
        self.delay_s = 0.0
        self.calls = 0
        self.fail: Exception | None = None

    def issue(self, expires_at: datetime | None = None, ns: str = "team-a") -> IssuedKey:
        key = generate_key()
        self.records[key.key_id] = StoredApiKey(
            key_id=key.key_id, secret_hash=key.secret_hash, principal=f"bot-{key.key_id[:4]}",
            grants=(Grant(scope=Scope.WRITE, namespace=ns),), expires_at=expires_at)
        return key

    def revoke(self, key_id: str) -> None:
        old = self.records[key_id]
        self.records[key_id] = StoredApiKey(
            key_id=old.key_id, secret_hash=old.secret_hash, principal=old.principal,
            grants=old.grants, expires_at=old.expires_at, revoked=True)

    async def lookup(self, key_id: str) -> StoredApiKey | None:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return self.records.get(key_id)


@pytest.fixture
def store() -> KeyStore:
    return KeyStore()


@pytest.fixture
def mono() -> Clock:
    return Clock(100.0)


@pytest.fixture
def wall() -> Clock:
    return Clock(time.time())


def gateway(store: KeyStore, mono: Clock, wall: Clock, **kw: object) -> Authenticator:
    return Authenticator(store.lookup, clock=mono, wall=wall, **kw)  # type: ignore[arg-type]


async def refused(auth: Authenticator, raw: str | None) -> str:
    with pytest.raises(Unauthenticated) as info:
        await auth.authenticate(raw)
    reason: str = info.value.detail["reason"]
    return reason


@pytest.mark.parametrize("raw", [None, "", "   ", "Bearer", "Bearer ", "bearer \t"])
async def test_no_credential_is_401(store: KeyStore, mono: Clock, wall: Clock,
                                    raw: str | None) -> None:
    assert await refused(gateway(store, mono, wall), raw) == "missing"


@pytest.mark.parametrize("raw", ["Basic dXNlcjpwYXNz", "x" * 40_000, "\x00", "mnk_short",
                                 "eyJhbGciOiJSUzI1NiJ9.e.s", "Bearer mnk_" + "a" * 60])
async def test_unrecognised_or_malformed_credentials_are_401(
        store: KeyStore, mono: Clock, wall: Clock, raw: str) -> None:
    assert await refused(gateway(store, mono, wall), raw) == "malformed"
    assert store.calls == 0  # never reached the lookup


async def test_valid_key_with_and_without_the_bearer_scheme(
        store: KeyStore, mono: Clock, wall: Clock) -> None:
    key = store.issue()
    auth = gateway(store, mono, wall)
    for raw in (key.key, f"Bearer {key.key}", f"bearer   {key.key}  ", f"BEARER {key.key}"):
        p = await auth.authenticate(raw)
        assert p.credential_id == key.key_id and p.method == "api_key"
        assert p.name == store.records[key.key_id].principal
    assert store.calls == 1


async def test_wrong_secret_is_refused_even_when_the_id_is_cached(
        store: KeyStore, mono: Clock, wall: Clock) -> None:
    key = store.issue()
    auth = gateway(store, mono, wall)
    await auth.authenticate(key.key)
    other = generate_key()
    forged = f"mnk_{key.key_id}_{parse_key(other.key).secret}"
    assert await refused(auth, forged) == "invalid"
    assert await refused(auth, f"mnk_{other.key_id}_{parse_key(key.key).secret}") == "invalid"


async def test_revocation_is_immediate_with_invalidate_and_bounded_by_ttl_without(
        store: KeyStore, mono: Clock, wall: Clock) -> None:
    key = store.issue()
    seen_event = gateway(store, mono, wall)
    missed_event = gateway(store, mono, wall)  # another gateway instance
    await seen_event.authenticate(key.key)
    await missed_event.authenticate(key.key)
    store.revoke(key.key_id)
    seen_event.invalidate(key.key_id)
    assert await refused(seen_event, key.key) == "revoked"
    mono.now += 4.9
    await missed_event.authenticate(key.key)  # still inside its cache TTL
    mono.now += 0.2
    assert await refused(missed_event, key.key) == "revoked"


async def test_expired_keys_and_keys_expiring_while_cached(
        store: KeyStore, mono: Clock, wall: Clock) -> None:
    now = datetime.fromtimestamp(wall.now, UTC)
    old = store.issue(expires_at=now - timedelta(seconds=1))
    soon = store.issue(expires_at=now + timedelta(seconds=2))
    naive = store.issue(expires_at=(now - timedelta(hours=1)).replace(tzinfo=None))
    auth = gateway(store, mono, wall)
    assert await refused(auth, old.key) == "expired"
    assert await refused(auth, naive.key) == "expired"  # a naive instant is read as UTC
    await auth.authenticate(soon.key)
    wall.now += 2.01  # past the instant (datetime keeps microseconds, the clock more)
    assert await refused(auth, soon.key) == "expired"


async def test_concurrent_misses_share_one_lookup(store: KeyStore, mono: Clock,
                                                  wall: Clock) -> None:
    key = store.issue()
    store.delay_s = 0.05
    auth = gateway(store, mono, wall)
    principals = await asyncio.gather(*(auth.authenticate(key.key) for _ in range(50)))
    assert {p.credential_id for p in principals} == {key.key_id}
    assert store.calls == 1


async def test_a_lookup_racing_an_invalidation_is_redone(store: KeyStore, mono: Clock,
                                                         wall: Clock) -> None:
    key = store.issue()
    store.delay_s = 0.05
    auth = gateway(store, mono, wall)
    task = asyncio.create_task(auth.authenticate(key.key))
    await asyncio.sleep(0.01)  # the lookup has read the old record and is "in flight"
    store.revoke(key.key_id)
    auth.invalidate(key.key_id)
    with pytest.raises(Unauthenticated):
        # The first lookup's answer predates the revocation; the redo sees it. Either the
        # request is refused now, or it passed and the cache must not hold the old record.
        await task
    assert store.calls == 2
    assert await refused(auth, key.key) == "revoked"


async def test_unknown_ids_are_negatively_cached_briefly(store: KeyStore, mono: Clock,
                                                         wall: Clock) -> None:
    auth = gateway(store, mono, wall)
    stranger = generate_key()
    assert await refused(auth, stranger.key) == "invalid"
    assert await refused(auth, stranger.key) == "invalid"
    assert store.calls == 1
    mono.now += 1.1
    assert await refused(auth, stranger.key) == "invalid"
    assert store.calls == 2
    # A key issued under that id is found at once after the issuance event's invalidate().
    store.records[stranger.key_id] = StoredApiKey(
        key_id=stranger.key_id, secret_hash=stranger.secret_hash, principal="late",
        grants=())
    assert await refused(auth, stranger.key) == "invalid"
    auth.invalidate(stranger.key_id)
    assert (await auth.authenticate(stranger.key)).name == "late"


async def test_a_lookup_answering_for_another_key_does_not_authenticate(
        store: KeyStore, mono: Clock, wall: Clock) -> None:
    key = store.issue()
    victim = generate_key()

    async def confused(key_id: str) -> StoredApiKey | None:
        return store.records[key.key_id]

    auth = Authenticator(confused, clock=mono, wall=wall)
    assert await refused(auth, victim.key) == "invalid"
    assert await refused(auth, f"mnk_{victim.key_id}_{parse_key(key.key).secret}") == "invalid"


async def test_lookup_failures_propagate_and_are_not_cached(store: KeyStore, mono: Clock,
                                                            wall: Clock) -> None:
    key = store.issue()
    auth = gateway(store, mono, wall)
    store.fail = Unavailable("read model down")
    with pytest.raises(Unavailable):
        await auth.authenticate(key.key)
    store.fail = None
    assert (await auth.authenticate(key.key)).credential_id == key.key_id


async def test_cache_is_bounded(store: KeyStore, mono: Clock, wall: Clock) -> None:
    keys = [store.issue() for _ in range(20)]
    auth = gateway(store, mono, wall, settings=AuthenticatorSettings(max_entries=5))
    for key in keys:
        await auth.authenticate(key.key)
    await auth.authenticate(keys[-1].key)
    assert store.calls == 20
    await auth.authenticate(keys[0].key)  # evicted long ago
    assert store.calls == 21


async def test_anonymous_only_when_configured_and_only_without_a_credential(
        store: KeyStore, mono: Clock, wall: Clock) -> None:
    anon = Principal.build(name="anonymous", kind="user",
                           grants=(Grant(scope=Scope.WRITE, namespace="*"),),
                           credential_id="anonymous", method="anonymous")
    auth = gateway(store, mono, wall, anonymous=anon)
    assert await auth.authenticate(None) is anon
    assert await refused(auth, "mnk_bad") == "malformed"  # a bad credential is never anonymous
    assert await refused(gateway(store, mono, wall), None) == "missing"


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with local_issuer() as state:
        yield state


@pytest.fixture
async def oidc(issuer: LocalIssuer) -> AsyncIterator[OidcValidator]:
    settings = OidcSettings(issuer=issuer.issuer, audience="mnemos", jwks_url=issuer.jwks_url)
    validator = OidcValidator(settings, JwksCache(settings))
    yield validator
    await validator.aclose()


async def test_bearer_jwt_goes_through_oidc_and_is_cached_until_exp(
        store: KeyStore, mono: Clock, wall: Clock, issuer: LocalIssuer,
        oidc: OidcValidator) -> None:
    key = new_signing_key("k1", "ES256")
    issuer.publish(key)
    auth = gateway(store, mono, wall, oidc=oidc)
    token = issuer.token(key, {"mnemos_grants": ["read:team-a"]}, lifetime_s=120)
    p = await auth.authenticate(f"Bearer {token}")
    assert p.method == "oidc" and [str(g) for g in p.grants] == ["read:team-a"]
    assert await auth.authenticate(token) is p  # cached
    wall.now += 120 + 31  # past exp and the leeway
    assert await refused(auth, token) == "expired"
    assert await refused(auth, issuer.token(key, audience="nope")) == "audience"
    # Without an OIDC validator, a JWT is just an unrecognised credential.
    assert await refused(gateway(store, mono, wall), token) == "malformed"


def test_credential_of() -> None:
    assert credential_of("Bearer abc") == "abc"
    assert credential_of("  abc  ") == "abc"
    assert credential_of("Bearerabc") == "Bearerabc"
    with pytest.raises(Unauthenticated):
        credential_of("Bearer    ")
