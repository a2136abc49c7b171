"""What a consumer receives from the stream: a message's sequence, subject, bytes and id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
from nats.aio.msg import Msg

from libs.events import HDR_MSG_ID

__all__ = [
    "Delivery",
    "delivered_of",
    "delivery_of",
    "pending_of",
    "stored_ns_of",
    "stream_seq_of",
    "trace_of",
]

_ACK_V1_TOKENS: Final = 9


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream message as a consumer sees it."""

    seq: int
    subject: str
    data: bytes
    msg_id: str | None = None
    delivered: int = 1
    """How many times the server has delivered this message (redeliveries count up)."""


def stream_seq_of(reply: str) -> int:
    """The stream sequence inside a JetStream ack subject (v1 or v2 token layout).

    Parsed here rather than through ``Msg.metadata``, which builds several objects per message
    on the hottest path of a consumer.
    """
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) == _ACK_V1_TOKENS else tokens[Msg.Ack.StreamSeq])


def pending_of(reply: str) -> int:
    """How many messages the consumer still had pending after this one (from its ack subject)."""
    tokens = reply.split(".")
    return int(tokens[8] if len(tokens) == _ACK_V1_TOKENS else tokens[Msg.Ack.NumPending])


def stored_ns_of(reply: str) -> int:
    """When the stream stored this message, in Unix nanoseconds (from its ack subject)."""
    tokens = reply.split(".")
    return int(tokens[7] if len(tokens) == _ACK_V1_TOKENS else tokens[Msg.Ack.Timestamp])


def delivered_of(reply: str) -> int:
    """How many times this message was delivered (from its ack subject)."""
    tokens = reply.split(".")
    return int(tokens[4] if len(tokens) == _ACK_V1_TOKENS else tokens[Msg.Ack.NumDelivered])


def delivery_of(msg: Any) -> Delivery:
    """The :class:`Delivery` of a pulled JetStream message."""
    headers = msg.headers or {}
    return Delivery(seq=stream_seq_of(msg.reply), subject=msg.subject, data=bytes(msg.data),
                    msg_id=headers.get(HDR_MSG_ID), delivered=delivered_of(msg.reply))


class _Trace(msgspec.Struct):
    id: str | None = None
    type: str | None = None
    command_id: str | None = None
    correlation_id: str | None = None


_TRACE_DECODER: Final = msgspec.json.Decoder(_Trace)


def trace_of(data: bytes) -> dict[str, str]:
    """The envelope fields that let a log line be followed across services (event id and type,
    command and correlation ids) of stored bytes; empty when they are not an event.

    Only the four fields are decoded, so consumers that never decode events (the auditor hashes
    bytes) can still log them.
    """
    try:
        trace = _TRACE_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {}
    fields = {"event_id": trace.id, "event_type": trace.type, "command_id": trace.command_id,
              "correlation_id": trace.correlation_id}
    return {key: value for key, value in fields.items() if value is not None}
