"""Operations other services own, forwarded over the bus (see :mod:`libs.runtime.bus`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from libs.auth import Principal
from libs.events import Operation
from libs.runtime.bus import request_operation

__all__ = ["Forwarder", "Handler"]

Handler = Callable[[Principal, str, Any], Awaitable[Any]]
"""``(principal, namespace, request) -> reply`` for one operation."""


class Forwarder:
    """Forwards operations to their owners over one NATS connection."""

    def __init__(self, nc: Any, idle_timeout_s: float = 30.0) -> None:
        self._nc = nc
        self._idle_timeout_s = idle_timeout_s

    def handler(self, op: Operation) -> Handler:
        """A handler answering ``op`` with the owner's final reply (progress is dropped)."""
        async def forward(principal: Principal, ns: str, request: Any) -> Any:
            async for final, message in self.stream(principal, op, ns, request):
                if final:
                    return message
            raise AssertionError("a forwarded operation ended without a reply")
        return forward

    def stream(self, principal: Principal, op: Operation, ns: str, request: msgspec.Struct
               ) -> AsyncIterator[tuple[bool, Any]]:
        """``(final, message)`` pairs: the owner's progress messages, then its reply."""
        return request_operation(self._nc, op, principal, ns, request,
                                 idle_timeout_s=self._idle_timeout_s)
