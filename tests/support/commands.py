"""Sending commands to a :class:`CommandService` the way a transport does: decode the body at
the edge, name the principal, execute."""

from __future__ import annotations

from libs.auth import Principal
from libs.events import CommandResult, decode_command, validate_writable_namespace
from services.command.application.commands import CommandService
from services.command.application.principals import validate_principal

__all__ = ["principal", "send"]


def principal(name: str | None = None) -> Principal:
    """An asserted principal (no credentials), as the anonymous mode builds it."""
    return Principal(name=validate_principal(name), kind="user", grants=(), credential_id="",
                     method="anonymous")


async def send(service: CommandService, ns: str, name: str, body: bytes,
               who: str | None = None) -> CommandResult:
    """Decode ``body`` as command ``name`` and execute it for ``who`` in ``ns``."""
    ns = validate_writable_namespace(ns)
    return await service.execute(principal(who), ns, name, decode_command(name, body))
