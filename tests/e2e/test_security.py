"""Authentication and authorization through the real gateway (issue 14): no credential is 401
everywhere; a key for one namespace reaches nothing of another, on every route and subject of
the catalog (so a new operation is covered by itself); revocation and expiry hold on every
gateway instance; OIDC tokens are checked against the issuer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from libs.auth.key_store import API_KEY_FOLD, issue_key
from libs.auth.local_admin import ADMIN_GRANTS
from libs.events import OPERATIONS
from libs.eventstore import JetStreamEventStore
from libs.runtime.config import Config
from libs.runtime.nats_server import free_port
from services.command import main as gateway_main
from tests.support.oidc_issuer import local_issuer, new_signing_key
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

A, B = "team-a", "team-b"
MEMORY = "01a2357e-0000-7000-8000-000000000001"
PATH_VALUES = {"memory_id": MEMORY, "ref": "main", "key_id": "aaaaaaaaaaaaaaaa"}


def _secured(config: Config, **more: Any) -> Config:
    return config.model_copy(update={"auth": "on", "key_cache_s": 30.0, **more})


async def _admin_key(nats_js: Any) -> str:
    issued, _ = await issue_key(JetStreamEventStore(nats_js, API_KEY_FOLD), principal="root",
                                kind="user", grants=ADMIN_GRANTS, by="test")
    return issued.key


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _key(http: httpx.AsyncClient, admin: str, grants: list[str],
               expires_at: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"principal": "agent-7", "grants": [
        {"scope": g.split(":")[0], "namespace": g.split(":")[1]} for g in grants]}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    response = await http.post("/v1/keys", json=body, headers=_bearer(admin))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _routes(ns: str) -> list[tuple[str, str, str]]:
    """Every (operation, method, path) of the catalog, in namespace ``ns`` where it has one."""
    found: list[tuple[str, str, str]] = []
    for op in OPERATIONS.values():
        for route in op.routes:
            path = route.path.replace("{ns}", ns)
            path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
            found.append((op.name, route.method, path))
    return found


async def test_every_route_and_subject_refuses_the_wrong_caller(config: Config, nats_js: Any
                                                               ) -> None:
    secured = _secured(config)
    admin = await _admin_key(nats_js)
    async with running_gateway(secured) as (http, nc):
        team_a = await _key(http, admin, ["admin:team-a", "write:team-a"])
        own = await http.post(f"/v1/{A}/memories", json={"content": "mine"},
                              headers=_bearer(team_a["key"]))
        assert own.status_code == 201, own.text
        assert own.json()["memory_id"]
        memory = (await http.get(f"/v1/{A}/memories/{own.json()['memory_id']}",
                                 params={"after_seq": own.json()["seq"]},
                                 headers=_bearer(team_a["key"]))).json()
        assert memory["created_by"]["principal"] == "agent-7"  # from the key, not a header
        for name, method, path in _routes(B):
            for headers, status in (({}, 401), (_bearer("mnk_garbage"), 401),
                                    (_bearer(team_a["key"]), 403)):
                response = await http.request(method, path, headers=headers,
                                              json={} if method == "POST" else None)
                assert response.status_code == status, (name, path, status, response.text)
        for op in OPERATIONS.values():
            ns = op.namespace or B
            subject = f"{op.subject_prefix}.{ns}.{op.name}"
            for headers, code in (({}, "unauthenticated"),
                                  (_bearer(team_a["key"]), "forbidden")):
                reply = json.loads((await nc.request(subject, b"{}", timeout=10,
                                                     headers=headers or None)).data)
                assert reply["ok"] is False and reply["error"]["code"] == code, (subject, reply)


async def test_revocation_and_expiry_hold_on_every_gateway(config: Config, nats_js: Any) -> None:
    secured = _secured(config)
    admin = await _admin_key(nats_js)
    second = secured.model_copy(update={"http_port": free_port()})
    async with running_gateway(secured) as (http, _nc), \
            _gateway(second) as other:
        revoked = await _key(http, admin, ["read:team-a"])
        expiring = await _key(http, admin, ["read:team-a"],
                              expires_at=datetime.now(UTC) + timedelta(seconds=2))
        for client in (http, other):
            for key in (revoked, expiring):
                ok = await client.get(f"/v1/{A}/memories", headers=_bearer(key["key"]))
                assert ok.status_code == 200, ok.text
        done = await http.post(f"/v1/keys/{revoked['view']['key_id']}/revoke",
                               json={"reason": "leaked"}, headers=_bearer(admin))
        assert done.status_code == 200, done.text
        await asyncio.sleep(2.5)
        for client in (http, other):
            for key in (revoked, expiring):
                refused = await client.get(f"/v1/{A}/memories", headers=_bearer(key["key"]))
                assert refused.status_code == 401, refused.text
        listed = (await http.get("/v1/keys", headers=_bearer(admin))).json()["keys"]
        assert {k["key_id"]: k["revoked"] for k in listed}[revoked["view"]["key_id"]] is True
        assert all("key" not in k and "secret_hash" not in k for k in listed)


async def test_oidc_tokens_are_checked_against_the_issuer(config: Config, nats_js: Any) -> None:
    with local_issuer() as issuer:
        key, stranger = new_signing_key("k1", "ES256"), new_signing_key("k2", "ES256")
        issuer.publish(key)
        secured = _secured(config, oidc_issuer=issuer.issuer, oidc_audience="mnemos",
                           oidc_jwks_url=issuer.jwks_url)
        async with running_gateway(secured) as (http, _nc):
            grants = {"mnemos_grants": ["write:team-a"]}
            good = issuer.token(key, grants)
            created = await http.post(f"/v1/{A}/memories", json={"content": "via oidc"},
                                      headers=_bearer(good))
            assert created.status_code == 201, created.text
            for bad in (issuer.token(key, grants, audience="someone-else"),
                        issuer.token(key, {**grants, "iss": "https://evil.example"}),
                        issuer.token(key, grants, lifetime_s=-120),
                        issuer.token(stranger, grants)):
                refused = await http.post(f"/v1/{A}/memories", json={"content": "x"},
                                          headers=_bearer(bad))
                assert refused.status_code == 401, refused.text
            other = await http.post(f"/v1/{B}/memories", json={"content": "x"},
                                    headers=_bearer(good))
            assert other.status_code == 403


@contextlib.asynccontextmanager
async def _gateway(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A second gateway instance (no projector) on ``config.http_port``."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway_main.run(config, stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{config.http_port}",
                                     timeout=15) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            yield http
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
