"""NATS request-reply entrypoints: commands on ``mnemos.cmd.<ns>.<command>`` and queries on
``mnemos.qry.<ns>.<query>``, each a queue-group subscription so gateway instances share load.

Every request gets exactly one reply: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {code, message, detail}}``. Unexpected failures are logged and answered
as ``internal`` errors — never silently dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from libs.events import (
    COMMAND_QUEUE_GROUP,
    MnemosError,
    PayloadTooLarge,
    encode_error_reply,
    encode_ok_reply,
    parse_command_subject,
)
from libs.events.subjects import (
    COMMAND_PREFIX,
    QUERY_PREFIX,
    QUERY_QUEUE_GROUP,
    parse_query_subject,
)
from libs.runtime.logging import get_logger
from services.command.application.commands import CommandService
from services.command.application.queries import QueryService

__all__ = ["PRINCIPAL_HEADER", "NatsGateway"]

log = get_logger(__name__)

PRINCIPAL_HEADER: Final = "Mnemos-Principal"
"""Header naming the caller (set by a trusted edge or the NATS account); default anonymous."""
COMMAND_SUBSCRIPTION: Final = f"{COMMAND_PREFIX}.>"
"""Wider than ``mnemos.cmd.*.*`` on purpose: a malformed subject (e.g. a namespace with a dot)
still reaches the gateway and gets a typed ``invalid_input`` reply instead of no responders."""
QUERY_SUBSCRIPTION: Final = f"{QUERY_PREFIX}.>"
MAX_IN_FLIGHT: Final = 256
"""Requests handled concurrently per subscription; beyond it, reading from NATS pauses."""

Handler = Callable[[str, str, bytes, str | None], Awaitable[object]]


class NatsGateway:
    """Subscribes the command and query subjects and answers each request."""

    def __init__(self, nc: Any, commands: CommandService, queries: QueryService,
                 max_request_bytes: int) -> None:
        self._nc = nc
        self._commands = commands
        self._queries = queries
        self._max_request_bytes = max_request_bytes
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def start(self) -> None:
        """Subscribe both subject families."""
        self._subs.append(await self._nc.subscribe(
            COMMAND_SUBSCRIPTION, queue=COMMAND_QUEUE_GROUP,
            cb=self._dispatcher(parse_command_subject, self._commands.handle, "command"),
        ))
        self._subs.append(await self._nc.subscribe(
            QUERY_SUBSCRIPTION, queue=QUERY_QUEUE_GROUP,
            cb=self._dispatcher(parse_query_subject, self._queries.handle, "query"),
        ))
        log.info("nats_listening", commands=COMMAND_SUBSCRIPTION, queries=QUERY_SUBSCRIPTION)

    async def stop(self) -> None:
        """Stop taking requests and finish the ones in flight."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # connection may already be closed at shutdown
                log.debug("unsubscribe_failed", error=str(exc))
        self._subs.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _dispatcher(self, parse: Callable[[str], tuple[str, str]], handler: Handler, kind: str
                    ) -> Callable[[Any], Awaitable[None]]:
        async def on_message(msg: Any) -> None:
            # nats-py runs a subscription's callbacks one at a time: hand each request to its own
            # task so a slow one does not hold up the rest, with a bound on how many run at once.
            await self._slots.acquire()
            task = asyncio.create_task(self._serve(msg, parse, handler, kind))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

        return on_message

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, msg: Any, parse: Callable[[str], tuple[str, str]], handler: Handler,
                     kind: str) -> None:
        try:
            reply = await self._answer(msg, parse, handler, kind)
        except Exception:  # _answer already maps everything; this is the last line of defence
            log.exception("nats_request_failed", subject=msg.subject[:200])
            reply = encode_error_reply(MnemosError("internal error"))
        if msg.reply:
            try:
                await msg.respond(reply)
            except Exception as exc:
                log.warning("nats_reply_failed", subject=msg.subject[:200], error=str(exc))
        else:
            log.info("nats_request_without_reply", subject=msg.subject[:200])

    async def _answer(self, msg: Any, parse: Callable[[str], tuple[str, str]], handler: Handler,
                      kind: str) -> bytes:
        try:
            if len(msg.data) > self._max_request_bytes:
                raise PayloadTooLarge(
                    f"request body is {len(msg.data)} bytes; the limit is "
                    f"{self._max_request_bytes}", limit=self._max_request_bytes,
                )
            ns, name = parse(msg.subject)
            principal = (msg.headers or {}).get(PRINCIPAL_HEADER)
            result = await handler(ns, name, bytes(msg.data), principal)
            return encode_ok_reply(result)
        except MnemosError as exc:
            if exc.http_status >= 500:
                log.warning(f"{kind}_failed", code=exc.code, error=exc.message)
            return encode_error_reply(exc)
        except Exception:
            log.exception(f"{kind}_crashed", subject=msg.subject[:200])
            return encode_error_reply(MnemosError("internal error; see the gateway log"))
