"""Durable event subscriptions: the subscriber side of the contract, with its traps handled.

A :class:`Subscription` owns one durable pull consumer on ``MNEMOS_EVENTS`` filtered to one
namespace (``mnemos.evt.<ns>.>``). It decodes every message into the typed event of
``libs.events`` (upcasting older schemas), skips types the caller did not ask for (acknowledged:
they are not the caller's business), and never lets a malformed message stop it: a message that
is no event in any schema is terminated (JetStream will not redeliver it) and reported to
``on_poison``; a well-formed event of a type newer than this contract is skipped, as the
catalogue asks of every consumer. Waiting for messages is bounded (``wait_s``) and nats-py's plain
``asyncio.TimeoutError`` is simply "nothing new yet".

On a secured broker the consumer name must be ``<identity>__<ns>`` and the connection the
identity's (``mnemos identities add NAME --kind subscriber --ns NS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.events import Event, InvalidInput, Unavailable, decode_event
from libs.events.model import event_types
from libs.events.stream import EVENTS_STREAM
from libs.events.subjects import EVENT_PREFIX
from libs.events.tokens import validate_namespace

__all__ = ["PoisonHandler", "PoisonMessage", "Received", "Subscription"]

log: Final = logging.getLogger("mnemos_sdk.subscribe")


class _Head(msgspec.Struct):
    type: str = ""


_HEAD: Final = msgspec.json.Decoder(_Head)


@dataclass(frozen=True, slots=True)
class PoisonMessage:
    """A message the subscription could not hand over (or whose handler kept failing)."""

    seq: int
    subject: str
    data: bytes
    reason: str
    delivered: int


PoisonHandler = Callable[[PoisonMessage], Awaitable[None] | None]
"""Told about each poison message, after it was terminated; it must not raise."""


class Received:
    """One decoded event with its stream position; acknowledge it once it is processed."""

    __slots__ = ("_msg", "delivered", "event", "seq")

    def __init__(self, msg: Any, event: Event, seq: int, delivered: int) -> None:
        self._msg, self.event, self.seq, self.delivered = msg, event, seq, delivered

    async def ack(self) -> None:
        """Done: never delivered again."""
        await self._msg.ack()

    async def nak(self, delay_s: float | None = None) -> None:
        """Not now: deliver again (after ``delay_s``)."""
        await self._msg.nak(delay=delay_s)

    async def term(self) -> None:
        """Never deliver again, unprocessed."""
        await self._msg.term()


async def _log_poison(poison: PoisonMessage) -> None:
    log.warning("mnemos poison message terminated: seq=%s subject=%s reason=%s",
                poison.seq, poison.subject, poison.reason)


class Subscription:
    """Iterate ``async for received in subscription`` (acknowledge each), or hand a handler to
    :meth:`run` (acknowledged on success, retried with backoff on failure, terminated and
    reported after ``max_deliver`` tries)."""

    def __init__(self, nc: Any, ns: str, types: Sequence[str] = (), *, durable: str,
                 on_poison: PoisonHandler | None = None, batch: int = 64, wait_s: float = 1.0,
                 max_deliver: int = 5, ack_wait_s: float = 30.0, from_start: bool = True,
                 stream: str = EVENTS_STREAM, request_timeout_s: float = 5.0) -> None:
        self.ns = validate_namespace(ns)
        unknown = sorted(set(types) - event_types().keys())
        if unknown:
            raise InvalidInput(f"unknown event types {unknown}", known=sorted(event_types()))
        self.types = frozenset(types)
        self.durable = durable
        self._nc, self._stream = nc, stream
        self._on_poison = on_poison or _log_poison
        self._batch, self._wait_s = batch, wait_s
        self._max_deliver, self._ack_wait_s = max_deliver, ack_wait_s
        self._from_start = from_start
        self._request_timeout_s = request_timeout_s
        self._sub: Any = None

    @property
    def filter_subject(self) -> str:
        """``mnemos.evt.<ns>.>``."""
        return f"{EVENT_PREFIX}.{self.ns}.>"

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create (or reuse) the durable consumer and bind to it."""
        js = self._nc.jetstream()
        config = ConsumerConfig(
            name=self.durable, durable_name=self.durable, filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT, max_deliver=self._max_deliver,
            ack_wait=self._ack_wait_s,
            deliver_policy=DeliverPolicy.ALL if self._from_start else DeliverPolicy.NEW)
        try:
            await js.add_consumer(self._stream, config, timeout=self._request_timeout_s)
            self._sub = await js.pull_subscribe_bind(self.durable, stream=self._stream)
        except TimeoutError as exc:
            raise Unavailable(f"no answer creating consumer {self.durable!r}",
                              reason="timeout") from exc
        except nats.errors.Error as exc:
            raise Unavailable(f"cannot create consumer {self.durable!r}: {exc!r}",
                              reason="broker") from exc

    async def close(self) -> None:
        """Stop receiving (the durable consumer and its position stay)."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def fetch(self) -> list[Received]:
        """The next decoded events of the asked types, waiting at most ``wait_s`` (maybe none)."""
        if self._sub is None:
            raise InvalidInput("the subscription is not started (use async with)")
        try:
            msgs = await self._sub.fetch(self._batch, timeout=self._wait_s)
        except TimeoutError:  # nats-py's "no messages": a plain asyncio.TimeoutError
            return []
        except nats.errors.ConnectionClosedError as exc:
            raise Unavailable("the broker connection is closed", reason="closed") from exc
        except nats.errors.Error as exc:
            log.warning("mnemos fetch failed, retrying: %r", exc)
            await asyncio.sleep(min(self._wait_s, 1.0))
            return []
        found: list[Received] = []
        for msg in msgs:
            received = await self._decode(msg)
            if received is not None:
                found.append(received)
        return found

    async def _decode(self, msg: Any) -> Received | None:
        meta = msg.metadata
        seq, delivered = meta.sequence.stream, meta.num_delivered
        try:
            kind = _HEAD.decode(msg.data).type
        except msgspec.DecodeError:
            kind = ""
        if kind and (kind not in event_types() or (self.types and kind not in self.types)):
            # a type nobody here asked for, or one newer than this contract: not ours to judge
            await msg.ack()
            return None
        try:
            event = decode_event(msg.data)
        except InvalidInput as exc:
            await self._poison(msg, seq, delivered, exc.message)
            return None
        return Received(msg, event, seq, delivered)

    async def _poison(self, msg: Any, seq: int, delivered: int, reason: str) -> None:
        await msg.term()
        try:
            outcome = self._on_poison(PoisonMessage(seq, msg.subject, msg.data, reason,
                                                    delivered))
            if outcome is not None:
                await outcome
        except Exception:  # a broken reporter must not stop the stream
            log.exception("mnemos on_poison failed")

    def __aiter__(self) -> AsyncIterator[Received]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Received]:
        while True:
            for received in await self.fetch():
                yield received

    async def run(self, handler: Callable[[Event], Awaitable[None]],
                  stop: asyncio.Event | None = None) -> None:
        """Hand every event to ``handler`` until ``stop`` is set; see the class docstring."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            for received in await self.fetch():
                try:
                    await handler(received.event)
                except Exception as exc:
                    if received.delivered >= self._max_deliver:
                        await self._poison(received._msg, received.seq, received.delivered,
                                           f"handler failed {received.delivered} times: "
                                           f"{exc!r}")
                    else:
                        await received.nak(min(0.1 * 2 ** received.delivered, 5.0))
                    continue
                await received.ack()
