"""A small HTTP client of the gateway, used by the ``mnemos`` verbs and the demo."""

from __future__ import annotations

import os
from typing import Any

import httpx

from libs.events.errors import InvalidInput, MnemosError, Unavailable, error_from_code
from libs.events.security import Grant
from libs.runtime.config import Config
from libs.runtime.instance import read_runtime

__all__ = ["GatewayClient", "gateway_url"]


def gateway_url(config: Config) -> str:
    """``MNEMOS_GATEWAY_URL``, else the URL a running ``mnemos up`` recorded, else the default."""
    explicit = os.environ.get("MNEMOS_GATEWAY_URL")
    if explicit:
        return explicit.rstrip("/")
    running = read_runtime(config.home)
    if running is not None:
        return running.http_url
    return f"http://{config.http_host}:{config.http_port}"


class GatewayClient:
    """Typed calls to the HTTP API; errors come back as :class:`MnemosError` subclasses."""

    def __init__(self, base_url: str, principal: str = "cli", timeout_s: float = 30.0,
                 credential: str | None = None) -> None:
        # With a credential the gateway knows who we are; without one (anonymous mode) the
        # principal is only asserted.
        headers = ({"Authorization": f"Bearer {credential}"} if credential
                   else {"X-Mnemos-Principal": principal})
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"gateway unreachable at {self._http.base_url}: {exc}") from exc
        body = response.json() if response.content else None
        if response.status_code >= 400:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            raise error_from_code(error.get("code", "internal"),
                                  error.get("message", response.text), error.get("detail"))
        return body

    def remember(self, ns: str, content: str, **fields: Any) -> dict[str, Any]:
        """Create a memory; returns the command result (ids, seq)."""
        result: dict[str, Any] = self._call("POST", f"/v1/{ns}/memories",
                                            json={"content": content, **fields})
        return result

    def get(self, ns: str, memory_id: str, after_seq: int | None = None) -> dict[str, Any]:
        """One memory with its provenance."""
        params = {"after_seq": after_seq} if after_seq is not None else {}
        result: dict[str, Any] = self._call("GET", f"/v1/{ns}/memories/{memory_id}", params=params)
        return result

    def history(self, ns: str, memory_id: str) -> dict[str, Any]:
        """Versions and events of one memory."""
        result: dict[str, Any] = self._call("GET", f"/v1/{ns}/memories/{memory_id}/history")
        return result

    def search(self, ns: str, query: str, k: int = 5, after_seq: int | None = None,
               mode: str = "hybrid") -> dict[str, Any]:
        """Hybrid search."""
        params: dict[str, Any] = {"q": query, "k": k, "mode": mode}
        if after_seq is not None:
            params["after_seq"] = after_seq
        result: dict[str, Any] = self._call("GET", f"/v1/{ns}/search", params=params)
        return result

    def create_key(self, principal: str, grants: list[str], kind: str = "agent",
                   expires_at: str | None = None) -> dict[str, Any]:
        """Issue an API key (admin on ``system``); the reply holds the secret, shown once."""
        body: dict[str, Any] = {"principal": principal, "kind": kind,
                                "grants": [_grant_body(g) for g in grants]}
        if expires_at is not None:
            body["expires_at"] = expires_at
        result: dict[str, Any] = self._call("POST", "/v1/keys", json=body)
        return result

    def list_keys(self) -> dict[str, Any]:
        """Every key, without secrets."""
        result: dict[str, Any] = self._call("GET", "/v1/keys")
        return result

    def revoke_key(self, key_id: str, reason: str) -> dict[str, Any]:
        """Revoke a key on every gateway."""
        result: dict[str, Any] = self._call("POST", f"/v1/keys/{key_id}/revoke",
                                            json={"reason": reason})
        return result

    def models(self, ns: str, **params: Any) -> dict[str, Any]:
        """The model registry (``key`` = one model with its field sources)."""
        query = {k: v for k, v in params.items() if v is not None}
        result: dict[str, Any] = self._call("GET", f"/v1/{ns}/models", params=query)
        return result

    def consult(self, ns: str, prompt: str, **fields: Any) -> dict[str, Any]:
        """Ask several routed models and get their consensus by content."""
        body = {"prompt": prompt, **{k: v for k, v in fields.items() if v is not None}}
        result: dict[str, Any] = self._call("POST", f"/v1/{ns}/consult", json=body)
        return result

    def registry_sync(self, target: str = "all") -> dict[str, Any]:
        """Sync the providers and/or the leaderboard now (admin)."""
        result: dict[str, Any] = self._call("POST", "/v1/registry/sync",
                                            json={"target": target})
        return result

    def ready(self) -> bool:
        """Whether the gateway reports ready."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False


def _grant_body(text: str) -> dict[str, str]:
    try:
        grant = Grant.parse(text)
    except ValueError as exc:
        raise InvalidInput(str(exc), grant=text) from None
    return {"scope": grant.scope.value, "namespace": grant.namespace}


def describe_error(exc: MnemosError) -> str:
    """The error for people: code and message, then the server's details (which field, why)."""
    lines = [f"error [{exc.code}]: {exc.message}"]
    for key, value in exc.detail.items():
        if key == "errors" and isinstance(value, list):
            lines += [f"  {'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}"
                      if isinstance(e, dict) else f"  {e}" for e in value]
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
