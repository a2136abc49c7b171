"""Who is calling: the one seam where a transport's headers become a :class:`Principal`.

Every transport asks its :class:`PrincipalResolver` before an operation runs, so the principal
recorded on every event, and the decision whether the operation is allowed, come from one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from libs.auth import Authenticator, Principal, authorize
from libs.events import (
    CREDENTIAL_HEADER,
    HTTP_PRINCIPAL_HEADER,
    NATS_PRINCIPAL_HEADER,
    InvalidInput,
    Operation,
    Scope,
    validate_namespace,
)

__all__ = [
    "ANONYMOUS",
    "AssertedPrincipals",
    "PrincipalResolver",
    "SecuredPrincipals",
    "validate_principal",
]

"""Where the credential travels, on HTTP and NATS alike: ``Bearer <API key or OIDC token>``."""

ANONYMOUS: Final = "anonymous"
"""Principal recorded when the caller names none."""
MAX_PRINCIPAL_CHARS: Final = 256


def validate_principal(value: str | None) -> str:
    """The principal a caller reported (absent -> ``anonymous``), checked for sanity."""
    if value is None or value == "":
        return ANONYMOUS
    if len(value) > MAX_PRINCIPAL_CHARS or not value.isprintable():
        raise InvalidInput(
            f"principal must be 1-{MAX_PRINCIPAL_CHARS} printable characters", field="principal"
        )
    return value


class PrincipalResolver(Protocol):
    """Authenticates a request's credential and authorizes its operation in its namespace."""

    async def from_http(self, headers: Mapping[str, str], op: Operation, ns: str | None
                        ) -> Principal:
        """The principal of an HTTP request (raises 401/403 errors when refused)."""

    async def from_nats(self, headers: Mapping[str, str], op: Operation, ns: str | None
                        ) -> Principal:
        """The principal of a NATS request (raises 401/403 errors when refused)."""


class AssertedPrincipals:
    """No authentication: the principal is whatever the caller asserts in a header (the
    explicitly configured anonymous mode; see the README's threat model)."""

    @staticmethod
    def _asserted(name: str | None) -> Principal:
        return Principal(name=validate_principal(name), kind="user", grants=(),
                         credential_id="", method="anonymous")

    async def from_http(self, headers: Mapping[str, str], op: Operation, ns: str | None
                        ) -> Principal:
        return self._asserted(headers.get(HTTP_PRINCIPAL_HEADER))

    async def from_nats(self, headers: Mapping[str, str], op: Operation, ns: str | None
                        ) -> Principal:
        return self._asserted(headers.get(NATS_PRINCIPAL_HEADER))


class SecuredPrincipals:
    """The principal from the credential, never from a header the caller asserts; then one
    authorization decision per operation: its scope on its namespace."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def _resolve(self, headers: Mapping[str, str], op: Operation, ns: str | None
                       ) -> Principal:
        raw = headers.get(CREDENTIAL_HEADER) or headers.get(CREDENTIAL_HEADER.lower())
        principal = await self._authenticator.authenticate(raw)
        authorize(principal, Scope(op.scope), op.namespace or validate_namespace(ns))
        return principal

    async def from_http(self, headers: Mapping[str, str], op: Operation, ns: str | None
                        ) -> Principal:
        return await self._resolve(headers, op, ns)

    async def from_nats(self, headers: Mapping[str, str], op: Operation, ns: str | None
                        ) -> Principal:
        return await self._resolve(headers, op, ns)
