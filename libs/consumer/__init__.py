"""One durable-consumer runtime for every service that folds the stream (see :mod:`.runtime`):
leadership, takeover at checkpoint + 1, bounded pulls, ack after commit, back-off, dead
letters, a progress watchdog, clean stops, metrics."""

from libs.consumer.contract import (
    ConsumerHandler,
    ConsumerSettings,
    Halt,
    Takeover,
    is_transient,
)
from libs.consumer.dead_letters import DeadLetter, dead_letter, publish_dead_letters
from libs.consumer.deliveries import Delivery
from libs.consumer.leadership import advisory_key, sleep_or_stop
from libs.consumer.runtime import ConsumerRuntime

__all__ = [
    "ConsumerHandler",
    "ConsumerRuntime",
    "ConsumerSettings",
    "DeadLetter",
    "Delivery",
    "Halt",
    "Takeover",
    "advisory_key",
    "dead_letter",
    "is_transient",
    "publish_dead_letters",
    "sleep_or_stop",
]
