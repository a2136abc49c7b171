"""Reading the event stream: a fast batch puller for durable consumers, the reset of a durable
consumer at a sequence, bounded readers for tools (verification, proofs, status).

The puller speaks JetStream's pull protocol directly (one ``MSG.NEXT`` request a batch): nats-py's
``fetch`` awaits every message through ``wait_for`` and a task, which at tens of thousands of
events per second is most of a consumer's CPU. Every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from libs.consumer.deliveries import stream_seq_of
from libs.events import EVENT_WILDCARD, EVENTS_STREAM, Unavailable, durable_consumer_config
from libs.runtime.nats_client import servers_of

__all__ = [
    "BatchPuller",
    "StreamMessage",
    "ack_floor",
    "connect_tool",
    "get_message",
    "read_stream",
    "reread_if_still_served",
    "reset_consumer",
    "shared_consumer",
    "stream_bounds",
]

_PENDING_LIMIT: Final = 65_536
_REQUEST_GRACE_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One stored message: its stream sequence, subject and exact bytes."""

    seq: int
    subject: str
    data: bytes


class BatchPuller:
    """Pull-consumer batches with one request each, received by a callback subscription.

    nats-py's ``fetch`` awaits every message through ``wait_for`` + a task; at tens of
    thousands of events per second that is most of the auditor's CPU. Here a batch is one
    ``MSG.NEXT`` request (first ``no_wait``, then a lingering one when nothing was ready),
    completed by a full batch or a status message (404 no messages, 408 expired).
    """

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.sub: Subscription | None = None
        self.inbox = ""
        self.buffer: list[Msg] = []
        self.remaining = 0
        self.done = asyncio.Event()
        self._abandoned = False
        """A request was cancelled mid-way: its late deliveries must go to an old inbox."""

    async def _subscribe(self) -> None:
        if self.sub is not None:
            await _quietly(self.sub.unsubscribe())
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(self.inbox, cb=self._on_msg,
                                           pending_msgs_limit=_PENDING_LIMIT)

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:  # a status message: the request is over
            self.done.set()
            return
        self.buffer.append(msg)
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()

    async def _request(self, batch: int, body: dict[str, Any], wait_s: float) -> list[Msg]:
        if self.sub is None or self._abandoned:
            await self._subscribe()
            self._abandoned = False
        self.buffer, self.remaining = [], batch
        self.done.clear()
        try:
            await self.nc.publish(self.subject, json.dumps({"batch": batch, **body}).encode(),
                                  reply=self.inbox)
            try:
                await asyncio.wait_for(self.done.wait(), timeout=wait_s + _REQUEST_GRACE_S)
            except TimeoutError:
                # The server never closed the request: move to a fresh inbox so that late
                # deliveries of this request cannot mix into the next batch.
                await self._subscribe()
        except asyncio.CancelledError:
            self._abandoned = True  # the same, at the next request
            raise
        taken, self.buffer = self.buffer, []
        return taken

    async def pull_ready(self, batch: int) -> list[Msg]:
        """Up to ``batch`` messages that are ready now (none: an empty list, at once)."""
        return await self._request(batch, {"no_wait": True}, 0.0)

    async def pull(self, batch: int, wait_s: float) -> list[Msg]:
        """Up to ``batch`` messages: at once if any are ready, else as soon as the first one
        arrives within ``wait_s`` (with whatever else is ready by then).

        The lingering request asks for one message: a request for a whole batch would only be
        completed by a full batch or its expiry, so a trickle of events (an agent writing a
        few a second) would wait out ``wait_s`` each time.
        """
        msgs = await self._request(batch, {"no_wait": True}, 0.0)
        if msgs or batch < 1:
            return msgs
        first = await self._request(1, {"expires": int(wait_s * 1e9)}, wait_s)
        if not first or batch == 1:
            return first
        return first + await self._request(batch - 1, {"no_wait": True}, 0.0)

    async def close(self) -> None:
        """Stop receiving."""
        if self.sub is not None:
            await _quietly(self.sub.unsubscribe())
            self.sub = None


async def _quietly(action: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):  # the connection may be closing
        await action


async def connect_tool(url: str, name: str, identity: Mapping[str, Any] | None = None
                       ) -> Client:
    """A short-lived connection for one verification, proof or status call.

    Unlike the services' ``connect_nats`` (reconnect forever, log every disconnect), a tool
    fails fast when NATS is down and closes without warnings.
    """
    return await nats.connect(servers_of(url), name=name, connect_timeout=5,
                              max_reconnect_attempts=3, **(identity or {}),
                              reconnect_time_wait=0.5, error_cb=_ignore_error)


async def _ignore_error(exc: Exception) -> None:
    # Errors surface as exceptions of the calls made; the callback would only duplicate them.
    del exc


async def stream_bounds(js: JetStreamContext) -> tuple[int, int]:
    """``(first_seq, last_seq)`` of the event stream now."""
    info = await js.stream_info(EVENTS_STREAM)
    return int(info.state.first_seq or 0), int(info.state.last_seq or 0)


async def ack_floor(js: JetStreamContext, name: str) -> int:
    """The ack floor of durable consumer ``name`` (0 if it does not exist)."""
    try:
        info = await js.consumer_info(EVENTS_STREAM, name)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


async def shared_consumer(nc: Client, js: JetStreamContext, name: str, filter_subject: str,
                          max_ack_pending: int, ack_wait_s: float) -> BatchPuller:
    """Bind the shared durable consumer ``name`` (creating it at the stream's start if it does
    not exist): its instances take turns on its messages, each acknowledged on its own, and the
    server redelivers what an instance took but did not acknowledge within ``ack_wait_s``."""
    try:
        await js.consumer_info(EVENTS_STREAM, name)
    except NotFoundError:
        config = dataclasses.replace(
            durable_consumer_config(name, ack_wait_s=ack_wait_s, max_ack_pending=max_ack_pending),
            filter_subject=filter_subject)
        await js.add_consumer(EVENTS_STREAM, config)
    return BatchPuller(nc, EVENTS_STREAM, name)


async def reset_consumer(nc: Client, js: JetStreamContext, name: str, start_seq: int,
                         max_ack_pending: int) -> tuple[BatchPuller, int]:
    """Recreate the durable consumer ``name`` at ``start_seq``; return a puller and the old
    consumer's ack floor (0 if there was none).

    Recreating it on every takeover means a previous instance's unacknowledged deliveries can
    never arrive out of order. Acks are cumulative (``AckPolicy.ALL``): acknowledging the last
    message of a committed batch acknowledges the batch.
    """
    old_floor = 0
    try:
        info = await js.consumer_info(EVENTS_STREAM, name)
        old_floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        await js.delete_consumer(EVENTS_STREAM, name)
    except NotFoundError:
        pass
    config = dataclasses.replace(
        durable_consumer_config(name, max_ack_pending=max_ack_pending),
        ack_policy=AckPolicy.ALL,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start_seq),
    )
    await js.add_consumer(EVENTS_STREAM, config)
    return BatchPuller(nc, EVENTS_STREAM, name), old_floor


async def read_stream(nc: Client, js: JetStreamContext, first: int, last: int,
                      batch: int = 2000, idle_s: float = 2.0) -> AsyncIterator[StreamMessage]:
    """Every stored message with ``first <= seq <= last``, in order, in bounded memory.

    An ephemeral, unacknowledged pull consumer; messages the server cannot serve (deleted,
    or corrupt on disk) are simply absent, which the caller sees as a sequence jump. Stops
    at ``last`` or when the server has nothing more for ``idle_s``.
    """
    if last < first:
        return
    name = f"audit_verify_{nc.new_inbox().rsplit('.', 1)[-1].lower()}"
    config = ConsumerConfig(
        name=name, ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, first), filter_subject=EVENT_WILDCARD, mem_storage=True,
        inactive_threshold=60.0, max_waiting=4,
    )
    await js.add_consumer(EVENTS_STREAM, config)
    puller = BatchPuller(nc, EVENTS_STREAM, name)
    try:
        while True:
            msgs = await puller.pull(batch, idle_s)
            if not msgs:
                return
            for msg in msgs:
                seq = stream_seq_of(msg.reply)
                if seq > last:
                    return
                yield StreamMessage(seq, msg.subject, msg.data)
                if seq == last:
                    return
    finally:
        await puller.close()
        await _quietly(js.delete_consumer(EVENTS_STREAM, name))


async def reread_if_still_served(js: JetStreamContext, expected: int, got: int) -> None:
    """A sequence jump in a consumer's deliveries (``expected`` missing, ``got`` delivered):
    if the stream still serves ``expected`` it was a delivery hiccup (a pull request abandoned
    and its deliveries sent to an inbox no longer read), so raise :class:`Unavailable`, a
    transient error: the session reads the stream again from its checkpoint. Returns when the
    stream no longer has the message (a real hole)."""
    if await get_message(js, expected) is not None:
        raise Unavailable(f"delivery skipped {expected} (next delivered: {got}); "
                          "reading the stream again")


async def get_message(js: JetStreamContext, seq: int) -> StreamMessage | None:
    """The message at ``seq``, or None if the stream cannot serve it."""
    try:
        raw = await js.get_msg(EVENTS_STREAM, seq, direct=True)
    except NotFoundError:
        return None
    if raw.seq != seq:
        return None
    return StreamMessage(seq, str(raw.subject), bytes(raw.data or b""))


