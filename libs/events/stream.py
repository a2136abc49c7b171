"""JetStream stream and consumer configuration, defined once.

The event stream is the source of truth: file storage, no deletes, no purges, no age limit.
Durability on power loss is governed by the server's ``sync_interval`` (see
``libs/runtime/nats_server.py`` and the README), not by the stream.
"""

from __future__ import annotations

from typing import Final

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from libs.events.subjects import DEADLETTER_WILDCARD, EVENT_WILDCARD

__all__ = [
    "DEADLETTER_STREAM",
    "DEFAULT_DUPLICATE_WINDOW_S",
    "EVENTS_STREAM",
    "HDR_EXPECTED_LAST_SUBJECT_SEQ",
    "HDR_MSG_ID",
    "JS_ERR_WRONG_LAST_SEQUENCE",
    "deadletter_stream_config",
    "durable_consumer_config",
    "events_stream_config",
]

EVENTS_STREAM: Final = "MNEMOS_EVENTS"
DEADLETTER_STREAM: Final = "MNEMOS_DEADLETTER"

HDR_MSG_ID: Final = "Nats-Msg-Id"
"""Header carrying the event id; JetStream drops a repeat inside the duplicate window."""

HDR_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
"""Header for optimistic concurrency: append only if the subject's last sequence matches."""

JS_ERR_WRONG_LAST_SEQUENCE: Final = 10071
"""JetStream ``err_code`` when the expected last subject sequence does not match."""

DEFAULT_DUPLICATE_WINDOW_S: Final = 600.0
"""Ten minutes: above the 2-minute floor of the design, and long enough to cover a projector
restart, after which the command-results table answers repeats."""


def events_stream_config(replicas: int = 1, duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
                         ) -> StreamConfig:
    """Configuration of ``MNEMOS_EVENTS`` (replicas 1 locally, 3 in a cluster)."""
    return StreamConfig(
        name=EVENTS_STREAM,
        description="Mnemos events: the immutable source of truth",
        subjects=[EVENT_WILDCARD],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
    )


def deadletter_stream_config(replicas: int = 1) -> StreamConfig:
    """Configuration of ``MNEMOS_DEADLETTER``: events a consumer gave up on, kept for operators."""
    return StreamConfig(
        name=DEADLETTER_STREAM,
        description="Mnemos dead letters: events a consumer could not process",
        subjects=[DEADLETTER_WILDCARD],
        storage=StorageType.FILE,
        num_replicas=replicas,
        deny_delete=True,
        deny_purge=False,
    )


def durable_consumer_config(name: str, ack_wait_s: float = 60.0, max_ack_pending: int = 4096
                            ) -> ConsumerConfig:
    """A durable pull consumer over every event, in stream order, with explicit acks.

    ``max_deliver`` is unlimited on purpose: poison events are detected by the consumer itself
    and moved to the dead-letter stream, so the broker never silently drops one.
    """
    return ConsumerConfig(
        durable_name=name,
        name=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        filter_subject=EVENT_WILDCARD,
    )
