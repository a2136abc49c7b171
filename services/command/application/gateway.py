"""The application entry point: every transport calls :meth:`Gateway.dispatch` with a decoded,
typed request and the caller's :class:`~libs.auth.Principal`.

One table binds each operation of the catalog (:data:`libs.events.OPERATIONS`) to its handler:
local ones (commands, read-model queries, history queries) run here; those another service owns
are forwarded over the bus to ``mnemos.svc.<owner>.<name>``. A catalog row without a handler
fails at start, so a new operation cannot be half wired.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from libs.auth import Principal
from libs.events import (
    COMMANDS,
    OPERATIONS,
    CommandBase,
    InvalidInput,
    Operation,
    validate_namespace,
)
from services.command.application.commands import CommandService
from services.command.application.forward import Forwarder, Handler
from services.command.application.history import HistoryService
from services.command.application.keys import KeyService
from services.command.application.queries import QueryService

__all__ = ["Gateway", "Handler", "bind_handlers"]

_COMMAND_NAMES: Final = {cls: name for name, cls in COMMANDS.items()}


def bind_handlers(commands: CommandService, queries: QueryService, history: HistoryService,
                  keys: KeyService, forward: Forwarder) -> Mapping[str, Handler]:
    """The handler of every operation, by name (the one registry of the gateway)."""

    async def command(principal: Principal, ns: str, request: CommandBase) -> Any:
        return await commands.execute(principal, ns, _COMMAND_NAMES[type(request)], request)

    def local(method: Callable[[str, Any], Awaitable[Any]]) -> Handler:
        async def handler(principal: Principal, ns: str, request: Any) -> Any:
            del principal  # read-side handlers need no principal beyond authorization
            return await method(ns, request)
        return handler

    table: dict[str, Handler] = {name: command for name in COMMANDS}
    table.update({
        "get": local(queries.get), "list": local(queries.list_memories),
        "count": local(queries.count_memories),
        "history": local(queries.history), "search": local(queries.search),
        "log": local(history.log), "branches": local(history.branches),
        "version": local(history.version), "diff": local(history.diff),
        "common_ancestor": local(history.common_ancestor),
        "create_key": keys.create, "revoke_key": keys.revoke, "list_keys": keys.list,
        "models": local(queries.models),
    })
    for op in OPERATIONS.values():
        if op.owner != "gateway":
            table[op.name] = forward.handler(op)
    missing = sorted(set(OPERATIONS) - set(table))
    if missing:
        raise RuntimeError(f"operations without a handler: {missing}")
    return MappingProxyType(table)


class Gateway:
    """Runs operations for any transport: namespace rules, then the bound handler."""

    def __init__(self, handlers: Mapping[str, Handler], forward: Forwarder) -> None:
        self._handlers = handlers
        self._forward = forward

    @staticmethod
    def namespace_of(op: Operation, ns: str | None) -> str:
        """The namespace an operation runs in: its fixed one, or the validated caller's."""
        if op.namespace is not None:
            if ns is not None and ns != op.namespace:
                raise InvalidInput(f"{op.name} lives in namespace {op.namespace!r}",
                                   field="namespace", value=ns)
            return op.namespace
        return validate_namespace(ns)

    async def dispatch(self, principal: Principal, op: Operation, ns: str | None,
                       request: msgspec.Struct) -> Any:
        """Run ``op`` for ``principal`` in namespace ``ns`` and return its reply."""
        return await self._handlers[op.name](principal, self.namespace_of(op, ns), request)

    def stream(self, principal: Principal, op: Operation, ns: str | None,
               request: msgspec.Struct) -> AsyncIterator[tuple[bool, Any]]:
        """``(final, message)`` pairs of a streaming operation: progress, then the reply."""
        if not op.streams:
            raise InvalidInput(f"{op.name} does not stream")
        return self._forward.stream(principal, op, self.namespace_of(op, ns), request)
