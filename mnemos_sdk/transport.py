"""The two ways to reach the gateway: HTTP (httpx) and NATS request-reply (nats-py).

A transport sends one typed request of one operation and answers the typed reply, or raises the
typed :class:`~libs.events.MnemosError` the gateway answered. What could not be sent or was not
answered in time is :class:`~libs.events.Unavailable` (safe to retry with the same command id);
nats-py's plain ``asyncio.TimeoutError`` never escapes.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httpx
import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from libs.events import CREDENTIAL_HEADER, Operation, PayloadTooLarge, Unavailable
from libs.events.replies import HTTP_PRINCIPAL_HEADER, NATS_PRINCIPAL_HEADER
from mnemos_sdk._wire import decode_http, decode_nats, encode_body, http_call, nats_subject

__all__ = ["HttpTransport", "NatsTransport", "Transport"]


class Transport(Protocol):
    """Sends one operation's request and answers its typed reply."""

    async def call(self, op: Operation, ns: str | None, request: msgspec.Struct,
                   timeout_s: float) -> Any:
        """The typed reply of ``op`` for ``request`` in namespace ``ns``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _auth_headers(credential: str | None, principal: str | None, principal_header: str
                  ) -> dict[str, str]:
    if credential:
        return {CREDENTIAL_HEADER: f"Bearer {credential}"}
    return {principal_header: principal} if principal else {}


class HttpTransport:
    """The gateway's HTTP API (``/v1/...``), one pooled httpx client."""

    def __init__(self, base_url: str, credential: str | None = None,
                 principal: str | None = None, client: httpx.AsyncClient | None = None) -> None:
        headers = _auth_headers(credential, principal, HTTP_PRINCIPAL_HEADER)
        self.base_url = base_url.rstrip("/")
        self._http = client or httpx.AsyncClient(base_url=self.base_url)
        self._headers = {**headers, "content-type": "application/json"}

    async def call(self, op: Operation, ns: str | None, request: msgspec.Struct,
                   timeout_s: float) -> Any:
        spec = http_call(op, ns, request)
        try:
            response = await self._http.request(spec.method, spec.path,
                                                params=spec.params,
                                                content=spec.body, headers=self._headers,
                                                timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{op.name}: no answer from {self.base_url} within {timeout_s}s",
                              reason="timeout") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{op.name}: gateway unreachable at {self.base_url}: {exc}",
                              reason="unreachable") from exc
        return decode_http(op, response.status_code, response.content)

    async def close(self) -> None:
        await self._http.aclose()


class NatsTransport:
    """Request-reply on ``mnemos.cmd.<ns>.<name>`` / ``mnemos.qry.<ns>.<name>``.

    ``nc`` is a connected nats-py client (this transport does not close one it was given);
    :meth:`connect` makes one, with a broker identity (nkey seed file and inbox prefix, see
    ``mnemos identities add``) where the broker is secured.
    """

    def __init__(self, nc: NatsClient, credential: str | None = None,
                 principal: str | None = None, *, owned: bool = False) -> None:
        self.nc = nc
        self._headers = _auth_headers(credential, principal, NATS_PRINCIPAL_HEADER)
        self._owned = owned

    @classmethod
    async def connect(cls, url: str, credential: str | None = None, *,
                      principal: str | None = None, nkeys_seed: str | None = None,
                      inbox_prefix: str | None = None, connect_timeout_s: float = 5.0
                      ) -> NatsTransport:
        """Connect to the broker at ``url``; a failure is :class:`Unavailable`."""
        options: dict[str, Any] = {"connect_timeout": connect_timeout_s,
                                   "allow_reconnect": True, "max_reconnect_attempts": -1}
        if nkeys_seed:
            options["nkeys_seed"] = nkeys_seed
        if inbox_prefix:
            options["inbox_prefix"] = inbox_prefix
        try:
            nc = await asyncio.wait_for(nats.connect(url, **options),
                                        connect_timeout_s * 2)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"broker unreachable at {url}: {exc!r}",
                              reason="unreachable") from exc
        return cls(nc, credential, principal, owned=True)

    async def call(self, op: Operation, ns: str | None, request: msgspec.Struct,
                   timeout_s: float) -> Any:
        subject = nats_subject(op, ns)
        try:
            reply = await self.nc.request(subject, encode_body(request), timeout=timeout_s,
                                          headers=self._headers)
        except TimeoutError as exc:  # nats.errors.TimeoutError is an asyncio.TimeoutError
            raise Unavailable(f"{op.name}: no reply on {subject} within {timeout_s}s",
                              reason="timeout") from exc
        except nats.errors.MaxPayloadError as exc:
            raise PayloadTooLarge(f"{op.name}: the request exceeds the broker's max_payload",
                                  limit=self.nc.max_payload) from exc
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(f"{op.name}: no gateway answers {subject}",
                              reason="no_responders") from exc
        except nats.errors.Error as exc:
            raise Unavailable(f"{op.name}: broker error: {exc!r}", reason="broker") from exc
        return decode_nats(op, reply.data)

    async def close(self) -> None:
        if self._owned and not self.nc.is_closed:
            await self.nc.drain()
