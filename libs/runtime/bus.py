"""Operations one service asks of another over NATS: ``mnemos.svc.<service>.<operation>``.

The gateway authenticates and validates a request at the edge, then forwards the typed request
with its namespace and principal in headers; the owning service answers through
:class:`OperationServer`, one reply per request (or progress messages first, for operations that
stream). Every wait is bounded: a request that hears nothing for ``idle_timeout_s`` is
:class:`~libs.events.Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import msgspec
import nats.errors

from libs.auth import Principal
from libs.events import (
    CALLER_HEADER,
    NAMESPACE_HEADER,
    STREAM_HEADER,
    MnemosError,
    Operation,
    Unavailable,
    decode_json,
    decode_reply,
    encode_error_reply,
    encode_ok_reply,
    service_queue_group,
    service_subject,
)
from libs.runtime.logging import get_logger

__all__ = ["OperationHandler", "OperationServer", "Progress", "request_operation"]

log = get_logger(__name__)

Progress = Callable[[object], Awaitable[None]]
"""Sends one progress message of a streaming reply."""
OperationHandler = Callable[[Principal, str, Any, Progress], Awaitable[Any]]
"""``(principal, namespace, request, progress) -> reply`` of an owned operation."""

_PRINCIPAL: Final = msgspec.json.Decoder(Principal)
MAX_IN_FLIGHT: Final = 64


async def request_operation(nc: Any, op: Operation, principal: Principal, ns: str,
                            request: msgspec.Struct, *, idle_timeout_s: float = 30.0
                            ) -> AsyncIterator[tuple[bool, Any]]:
    """Forward ``request`` to the owner of ``op``; yield ``(final, message)`` pairs: progress
    messages (decoded JSON) and then the reply, converted to ``op.reply``."""
    inbox = nc.new_inbox()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(msg: Any) -> None:
        await queue.put(msg)

    sub = await nc.subscribe(inbox, cb=on_message)
    try:
        headers = {NAMESPACE_HEADER: ns, CALLER_HEADER: msgspec.json.encode(principal).decode()}
        await nc.publish(service_subject(op.owner, op.name), msgspec.json.encode(request),
                         reply=inbox, headers=headers)
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), idle_timeout_s)
            except TimeoutError:
                raise Unavailable(f"{op.owner} did not answer {op.name} within "
                                  f"{idle_timeout_s:g}s; is it running?", service=op.owner
                                  ) from None
            if (msg.headers or {}).get(STREAM_HEADER) == "progress":
                yield False, msgspec.json.decode(msg.data)
                continue
            if not msg.data and (msg.headers or {}).get("Status") == "503":
                raise Unavailable(f"no {op.owner} instance is running to answer {op.name}",
                                  service=op.owner)
            yield True, msgspec.convert(decode_reply(msg.data), op.reply)
            return
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


class OperationServer:
    """Answers a service's operations on ``mnemos.svc.<service>.>`` (queue group: instances
    share the load)."""

    def __init__(self, nc: Any, service: str, operations: Mapping[str, Operation],
                 handlers: Mapping[str, OperationHandler]) -> None:
        missing = sorted(set(operations) - set(handlers))
        if missing:
            raise RuntimeError(f"{service}: operations without a handler: {missing}")
        self._nc, self._service = nc, service
        self._operations, self._handlers = operations, handlers
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def start(self) -> None:
        """Subscribe every operation's subject."""
        for name in self._operations:
            self._subs.append(await self._nc.subscribe(
                service_subject(self._service, name), queue=service_queue_group(self._service),
                cb=self._on_request))
        log.info("operations_listening", service=self._service, operations=sorted(
            self._operations))

    async def stop(self) -> None:
        """Stop taking requests and finish those in flight."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_request(self, msg: Any) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, msg: Any) -> None:
        name = msg.subject.rsplit(".", 1)[-1]

        async def progress(item: object) -> None:
            if msg.reply:
                await self._nc.publish(msg.reply, msgspec.json.encode(item),
                                       headers={STREAM_HEADER: "progress"})

        try:
            op = self._operations[name]
            headers = msg.headers or {}
            principal = _PRINCIPAL.decode(headers[CALLER_HEADER])
            request = decode_json(msg.data or b"{}", op.request, name)
            reply = encode_ok_reply(await self._handlers[name](
                principal, headers[NAMESPACE_HEADER], request, progress))
        except MnemosError as exc:
            reply = encode_error_reply(exc)
        except Exception:
            log.exception("operation_failed", service=self._service, operation=name)
            reply = encode_error_reply(MnemosError(f"{self._service} failed; see its log"))
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(reply)
