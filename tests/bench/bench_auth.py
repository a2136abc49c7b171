"""Per-call cost of authenticate + authorize (figures only, no assertions).

Run: ``python -m tests.bench.bench_auth``. Measures, in one process, with an in-memory key lookup
(so the figures are the authenticator's own cost, not a database's):

- API key, cache hit: parse, BLAKE3 of the secret, constant-time compare, expiry, authorize;
- API key, cache miss: the same plus an awaited lookup and building the principal;
- bearer JWT (ES256 and RS256), cache hit, and the full signature verification of a miss.

Each figure is the median (and p99) over ``ROUNDS`` batches of ``BATCH`` calls, per call.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Final

from libs.auth.authenticate import Authenticator
from libs.auth.authorize import authorize
from libs.auth.keys import StoredApiKey, generate_key
from libs.auth.oidc import JwksCache, OidcSettings, OidcValidator
from libs.events.security import Grant, Scope
from tests.support.oidc_issuer import local_issuer, new_signing_key

BATCH: Final = 2_000
ROUNDS: Final = 15
GRANTS: Final = (Grant(scope=Scope.WRITE, namespace="team-*"),
                 Grant(scope=Scope.READ, namespace="shared"))


async def per_call_us(step: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Median and p99 of the per-call cost in microseconds over ROUNDS batches."""
    for _ in range(200):
        await step()
    samples: list[float] = []
    gc.disable()
    try:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(BATCH):
                await step()
            samples.append((time.perf_counter() - start) / BATCH * 1e6)
    finally:
        gc.enable()
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def line(name: str, figures: tuple[float, float]) -> None:
    sys.stdout.write(f"{name:<52} median {figures[0]:7.2f} µs   p99 {figures[1]:7.2f} µs\n")


async def bench_keys() -> None:
    issued = generate_key()
    record = StoredApiKey(key_id=issued.key_id, secret_hash=issued.secret_hash,
                          principal="bench-bot", grants=GRANTS)

    async def lookup(key_id: str) -> StoredApiKey | None:
        return record if key_id == record.key_id else None

    auth = Authenticator(lookup)

    async def hit() -> None:
        principal = await auth.authenticate(f"Bearer {issued.key}")
        authorize(principal, Scope.WRITE, "team-a")

    async def miss() -> None:
        auth.invalidate(issued.key_id)
        principal = await auth.authenticate(f"Bearer {issued.key}")
        authorize(principal, Scope.WRITE, "team-a")

    line("api key: authenticate + authorize, cache hit", await per_call_us(hit))
    line("api key: authenticate + authorize, cache miss", await per_call_us(miss))


async def bench_bearer() -> None:
    with local_issuer() as issuer:
        for alg in ("ES256", "RS256", "EdDSA"):
            key = new_signing_key(f"bench-{alg}", alg)
            issuer.publish(key)
            settings = OidcSettings(issuer=issuer.issuer, audience="mnemos",
                                    jwks_url=issuer.jwks_url)
            validator = OidcValidator(settings, JwksCache(settings))
            auth = Authenticator(lambda _k: asyncio.sleep(0, None), oidc=validator)
            token = issuer.token(key, {"mnemos_grants": ["write:team-*"]}, lifetime_s=3600)

            async def hit(auth: Authenticator = auth, token: str = token) -> None:
                authorize(await auth.authenticate(f"Bearer {token}"), Scope.WRITE, "team-a")

            async def miss(auth: Authenticator = auth, token: str = token) -> None:
                auth.clear()
                authorize(await auth.authenticate(f"Bearer {token}"), Scope.WRITE, "team-a")

            line(f"bearer {alg}: authenticate + authorize, cache hit", await per_call_us(hit))
            line(f"bearer {alg}: verify signature (cache miss)", await per_call_us(miss))
            await validator.aclose()


async def main() -> None:
    """Print every figure."""
    sys.stdout.write(f"python {sys.version.split()[0]}, {BATCH} calls x {ROUNDS} rounds\n")
    await bench_keys()
    await bench_bearer()


if __name__ == "__main__":
    asyncio.run(main())
