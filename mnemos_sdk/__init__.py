"""The Mnemos Python SDK: typed clients of a Mnemos gateway (HTTP or NATS) and durable event
subscriptions, built on the wire contract ``libs.events`` (shipped with this package).

    from mnemos_sdk import Mnemos
    with Mnemos.http(ns="team-a") as mnemos:
        written = mnemos.remember(content="Deploys happen on Tuesdays", tags=("ops",))
        hits = mnemos.search(q="when do we deploy").hits   # waits for the write above

Errors are the typed :class:`MnemosError` subclasses of the contract (``Conflict``,
``NotFound``, ``InvalidInput``, ``Forbidden``, ``Unavailable``, ...).
"""

from libs.events import (
    Conflict,
    DeadLettered,
    Forbidden,
    InvalidInput,
    MnemosError,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    Unavailable,
    UnknownCommand,
)
from mnemos_sdk.client import AsyncMnemos, Mnemos, RetryPolicy
from mnemos_sdk.subscribe import PoisonMessage, Received, Subscription
from mnemos_sdk.transport import HttpTransport, NatsTransport, Transport

__all__ = [
    "AsyncMnemos",
    "Conflict",
    "DeadLettered",
    "Forbidden",
    "HttpTransport",
    "InvalidInput",
    "Mnemos",
    "MnemosError",
    "NatsTransport",
    "NotFound",
    "PayloadTooLarge",
    "PoisonMessage",
    "Received",
    "RetryPolicy",
    "Subscription",
    "Transport",
    "Unauthenticated",
    "Unavailable",
    "UnknownCommand",
]
