"""What a service gives the consumer runtime (:mod:`.runtime`) and how an instance is set up:
the handler protocol, the settings, and the runtime's verdicts on failures (``Halt``, transient).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import nats.errors
import psycopg

from libs.consumer.deliveries import Delivery
from libs.events import EVENT_WILDCARD, Unavailable

__all__ = ["Conn", "ConsumerHandler", "ConsumerSettings", "Halt", "Takeover", "is_transient"]

P = TypeVar("P")
Conn = Any


class Halt(Exception):
    """Raised by a handler that must not go on (e.g. a hole in the stream): the runtime keeps
    its lock, so no standby goes past the problem either, and tries again later."""


@dataclass(frozen=True, slots=True)
class Takeover:
    """What an instance finds when it becomes the active one."""

    previous_ack_floor: int
    """The ack floor of the durable consumer before it was recreated (0: there was none)."""


class ConsumerHandler(Protocol[P]):
    """A consumer's own logic; see the module docstring for what the runtime does around it."""

    async def start(self, conn: Conn, takeover: Takeover) -> int:
        """Become active on ``conn``: return the checkpoint (last sequence committed)."""

    async def prepare(self, deliveries: Sequence[Delivery]) -> P:
        """Work on a batch that needs no order and no lock (decoding, embedding); may run for
        later batches while an earlier one is applied."""

    async def apply(self, conn: Conn, deliveries: Sequence[Delivery], prepared: P) -> int:
        """Apply a batch (in stream order, above the checkpoint) and commit it together with
        the new checkpoint; return that checkpoint."""

    async def idle(self, conn: Conn) -> None:
        """Called when nothing arrived for a while (time-based work)."""

    async def on_gap(self, conn: Conn, expected: int, got: int) -> None:
        """A sequence jump in the deliveries: return to go on, raise :class:`Halt` to stop, or
        raise a transient error to read the stream again from the checkpoint."""

    async def close(self) -> None:
        """Release what :meth:`prepare` opened, when a session ends."""


@dataclass(frozen=True)
class ConsumerSettings:
    """How one consumer instance runs.

    ``name`` is its durable consumer; ``role`` and ``schema`` key its leadership lock (and label
    its metrics); ``connect`` opens the committing connection (autocommit).
    """

    name: str
    role: str
    schema: str
    connect: Callable[[], Awaitable[Conn]]
    batch_size: int = 256
    ahead: int = 0
    fetch_wait_s: float = 1.0
    standby_poll_s: float = 1.0
    first_backoff_s: float = 0.25
    max_backoff_s: float = 10.0
    stall_after_s: float = 30.0
    apply_timeout_s: float = 300.0
    connect_timeout_s: float = 10.0
    halt_recheck_s: float = 30.0
    max_ack_pending: int = 8192
    shared: bool = False
    filter_subject: str = EVENT_WILDCARD
    """Subjects a shared consumer takes (a leader consumer takes every event)."""
    ack_wait_s: float = 60.0
    """Shared consumers: how long a message taken by an instance is kept from the others."""

    def __post_init__(self) -> None:
        # The server delivers at most max_ack_pending unacknowledged messages: the batch in
        # flight and those staged ahead of it must fit, or every pull past it waits out
        # fetch_wait_s for messages that cannot come (a 5,000-event replay batch ran 1.9x
        # slower for it).
        if self.batch_size < 1 or self.batch_size * (self.ahead + 1) > self.max_ack_pending:
            raise ValueError(f"consumer {self.name}: batch_size {self.batch_size} x "
                             f"{self.ahead + 1} batches in flight must be between 1 and "
                             f"max_ack_pending {self.max_ack_pending}")


def is_transient(exc: BaseException) -> bool:
    """A failure of the surroundings (connection lost, timeout): retry, commit nothing."""
    return isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError | Unavailable | nats.errors.Error
        | TimeoutError | ConnectionError | OSError,
    )
