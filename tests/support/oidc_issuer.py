"""A local OIDC issuer for tests: self-signed keys served as a JWKS over real HTTP.

Binds 127.0.0.1 on a free port, in a thread; serves ``/.well-known/openid-configuration`` and
``/jwks.json`` with whatever keys are *published* at the moment (so a test can rotate them),
and counts requests. Tokens are signed with :meth:`LocalIssuer.token`. Used by the unit tests of
:mod:`libs.auth` and usable by gateway tests that need bearer tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = ["LocalIssuer", "SigningKey", "local_issuer", "new_signing_key"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm and kid, and its public JWK."""

    kid: str
    alg: str
    private: PrivateKey
    jwk: dict[str, Any]


def new_signing_key(kid: str, alg: str = "RS256", rsa_bits: int = 2048) -> SigningKey:
    """A fresh key for ``alg`` (RS256, ES256 or EdDSA) with its public JWK."""
    private: PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(f"unsupported test algorithm {alg}")
    return SigningKey(kid, alg, private, {**jwk, "kid": kid, "use": "sig", "alg": alg})


@dataclass
class LocalIssuer:
    """State of the local issuer: published keys, request counts, an outage switch."""

    url: str = ""
    published: list[dict[str, Any]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    down: bool = False
    discovery_issuer: str | None = None

    @property
    def issuer(self) -> str:
        """The ``iss`` this issuer signs with (its base URL)."""
        return self.url

    @property
    def jwks_url(self) -> str:
        """Where the JWKS is served."""
        return f"{self.url}/jwks.json"

    def publish(self, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> None:
        """Serve exactly these public keys from now on (plus raw ``extra`` JWK dicts)."""
        self.published = [k.jwk for k in keys] + list(extra or [])

    def token(self, key: SigningKey, claims: dict[str, Any] | None = None, *,
              audience: str = "mnemos", lifetime_s: float = 300.0,
              headers: dict[str, Any] | None = None) -> str:
        """A token signed by ``key`` with sane defaults that ``claims`` override."""
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "aud": audience, "sub": "alice",
                                   "iat": now, "exp": int(now + lifetime_s)}
        payload.update(claims or {})
        return jwt.encode(payload, key.private, algorithm=key.alg,
                          headers={"kid": key.kid, **(headers or {})})


def _handler(state: LocalIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests[self.path] = state.requests.get(self.path, 0) + 1
            if state.down:
                self._send(503, {"error": "temporarily_unavailable"})
            elif self.path == "/jwks.json":
                self._send(200, {"keys": state.published})
            elif self.path == "/.well-known/openid-configuration":
                self._send(200, {"issuer": state.discovery_issuer or state.issuer,
                                 "jwks_uri": state.jwks_url,
                                 "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
            else:
                self._send(404, {"error": "not_found"})

        def _send(self, status: int, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Cache-Control", "public, max-age=3600")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


@contextmanager
def local_issuer() -> Iterator[LocalIssuer]:
    """Run a local issuer for the duration of the block."""
    state = LocalIssuer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
