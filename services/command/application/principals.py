"""Who is calling: the one seam where a transport's headers become a :class:`Principal`.

Every transport asks its :class:`PrincipalResolver` before an operation runs, so the principal
recorded on every event, and the decision whether the operation is allowed, come from one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from libs.auth import Principal
from libs.events import HTTP_PRINCIPAL_HEADER, NATS_PRINCIPAL_HEADER, InvalidInput, Operation

__all__ = ["ANONYMOUS", "AssertedPrincipals", "PrincipalResolver", "validate_principal"]

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
