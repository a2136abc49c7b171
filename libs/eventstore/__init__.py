"""Append and load any aggregate on the event stream with optimistic concurrency.

:class:`EventStore` is the port; :class:`JetStreamEventStore` the real adapter (one subject per
aggregate, ``Nats-Expected-Last-Subject-Sequence``, ``Nats-Msg-Id``) and
:class:`InMemoryEventStore` the fake with the same semantics, both held to one conformance suite
(``tests/contract/test_eventstore.py``). An aggregate's state is a fold (:class:`Fold`) of its
events, so the store serves any aggregate type.
"""

from libs.eventstore.base import Appended, EventStore, Fold, WrongExpectedSequence
from libs.eventstore.jetstream import JetStreamEventStore
from libs.eventstore.memory import InMemoryEventStore

__all__ = [
    "Appended",
    "EventStore",
    "Fold",
    "InMemoryEventStore",
    "JetStreamEventStore",
    "WrongExpectedSequence",
]
