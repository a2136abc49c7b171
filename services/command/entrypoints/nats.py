"""NATS request-reply entrypoint: commands on ``mnemos.cmd.<ns>.<name>``, queries on
``mnemos.qry.<ns>.<name>``, for every operation of the catalog; each a queue-group subscription
so gateway instances share the load.

Every request gets exactly one final reply: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {code, message, detail}}`` (a streaming operation asked for progress
sends progress messages first). The body is decoded once, here, into the operation's struct.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from libs.events import (
    COMMAND_QUEUE_GROUP,
    STREAM_HEADER,
    Kind,
    MnemosError,
    PayloadTooLarge,
    UnknownCommand,
    decode_json,
    encode_error_reply,
    encode_ok_reply,
    operation,
    parse_command_subject,
    parse_query_subject,
)
from libs.events.subjects import COMMAND_PREFIX, QUERY_PREFIX, QUERY_QUEUE_GROUP
from libs.eventstore.jetstream import broker_failure
from libs.runtime.logging import get_logger
from services.command.application.gateway import Gateway
from services.command.application.principals import PrincipalResolver

__all__ = ["NatsEntrypoint"]

log = get_logger(__name__)

COMMAND_SUBSCRIPTION: Final = f"{COMMAND_PREFIX}.>"
"""Wider than ``mnemos.cmd.*.*`` on purpose: a malformed subject (e.g. a namespace with a dot)
still reaches the gateway and gets a typed ``invalid_input`` reply instead of no responders."""
QUERY_SUBSCRIPTION: Final = f"{QUERY_PREFIX}.>"
MAX_IN_FLIGHT: Final = 256
"""Requests handled concurrently per subscription; beyond it, reading from NATS pauses."""

_PARSERS: Final[dict[Kind, Callable[[str], tuple[str, str]]]] = {
    "command": parse_command_subject, "query": parse_query_subject,
}


class NatsEntrypoint:
    """Subscribes the command and query subjects and answers each request."""

    def __init__(self, nc: Any, gateway: Gateway, principals: PrincipalResolver,
                 max_request_bytes: int) -> None:
        self._nc = nc
        self._gateway = gateway
        self._principals = principals
        self._max_request_bytes = max_request_bytes
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def start(self) -> None:
        """Subscribe both subject families."""
        self._subs.append(await self._nc.subscribe(
            COMMAND_SUBSCRIPTION, queue=COMMAND_QUEUE_GROUP, cb=self._dispatcher("command")))
        self._subs.append(await self._nc.subscribe(
            QUERY_SUBSCRIPTION, queue=QUERY_QUEUE_GROUP, cb=self._dispatcher("query")))
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

    def _dispatcher(self, kind: Kind) -> Callable[[Any], Awaitable[None]]:
        async def on_message(msg: Any) -> None:
            # nats-py runs a subscription's callbacks one at a time: hand each request to its own
            # task so a slow one does not hold up the rest, with a bound on how many run at once.
            await self._slots.acquire()
            task = asyncio.create_task(self._serve(msg, kind))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

        return on_message

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, msg: Any, kind: Kind) -> None:
        try:
            reply = await self._answer(msg, kind)
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

    async def _answer(self, msg: Any, kind: Kind) -> bytes:
        try:
            if len(msg.data) > self._max_request_bytes:
                raise PayloadTooLarge(
                    f"request body is {len(msg.data)} bytes; the limit is "
                    f"{self._max_request_bytes}", limit=self._max_request_bytes,
                )
            ns, name = _PARSERS[kind](msg.subject)
            op = operation(name, kind)
            if op is None:
                raise UnknownCommand(f"unknown {kind} {name!r}", known=_known(kind))
            principal = await self._principals.from_nats(msg.headers or {}, op, ns)
            request = decode_json(bytes(msg.data) or b"{}", op.request, f"{name} {kind}")
            if op.streams and getattr(request, "progress", False) and msg.reply:
                return await self._stream(msg.reply, principal, op, ns, request)
            return encode_ok_reply(await self._gateway.dispatch(principal, op, ns, request))
        except MnemosError as exc:
            if exc.http_status >= 500:
                log.warning(f"{kind}_failed", code=exc.code, error=exc.message)
            return encode_error_reply(exc)
        except Exception as exc:
            failure = broker_failure(exc, msg.subject[:200])
            if failure is not None:  # a broker call not wrapped where it is made: retry-safe
                log.warning(f"{kind}_broker_failure", subject=msg.subject[:200], exc_info=exc)
                return encode_error_reply(failure)
            log.exception(f"{kind}_crashed", subject=msg.subject[:200])
            return encode_error_reply(MnemosError("internal error; see the gateway log"))

    async def _stream(self, reply_to: str, principal: Any, op: Any, ns: str,
                      request: msgspec.Struct) -> bytes:
        async for final, message in self._gateway.stream(principal, op, ns, request):
            if final:
                return encode_ok_reply(message)
            await self._nc.publish(reply_to, msgspec.json.encode(message),
                                   headers={STREAM_HEADER: "progress"})
        raise MnemosError(f"{op.name} ended without a reply")


def _known(kind: Kind) -> list[str]:
    from libs.events import OPERATIONS

    return sorted(op.name for op in OPERATIONS.values() if op.kind == kind)
