"""Every durable consumer on the event stream and how far behind it is: Mnemos's own and
third-party subscribers alike (an agent's or a team's own service reading the stream).

``mnemos status`` prints them; the gateway exports them as Prometheus gauges
(:func:`export_stream_consumers`), so a third-party subscriber falling behind can be alerted
on like the projector. The broker is asked every ``interval_s``; each wait is bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final, Literal

from nats.js.errors import NotFoundError
from prometheus_client import Gauge

from libs.consumer.leadership import sleep_or_stop
from libs.events.stream import EVENTS_STREAM
from libs.eventstore.jetstream import broker_failure
from libs.runtime.logging import get_logger

__all__ = ["MNEMOS_CONSUMERS", "StreamConsumer", "export_stream_consumers", "owner_of",
           "stream_consumers"]

log = get_logger(__name__)

MNEMOS_CONSUMERS: Final = ("projector", "auditor", "compressor", "registry", "replay")
"""Name prefixes of the durable consumers Mnemos's own services create."""

Owner = Literal["mnemos", "third-party"]

_LABELS: Final = ["durable", "owner"]
PENDING: Final = Gauge(
    "mnemos_stream_consumer_pending",
    "Events in the stream the durable consumer has not been delivered yet (the broker's "
    "num_pending), for every durable on the event stream, third-party ones included.", _LABELS)
ACK_PENDING: Final = Gauge(
    "mnemos_stream_consumer_ack_pending",
    "Events delivered to the durable consumer and not acknowledged yet.", _LABELS)
REDELIVERED: Final = Gauge(
    "mnemos_stream_consumer_redelivered",
    "Events the broker is redelivering to the durable consumer.", _LABELS)


def owner_of(name: str) -> Owner:
    """Whose consumer a durable is, from its name."""
    return "mnemos" if name.split("_", maxsplit=1)[0] in MNEMOS_CONSUMERS else "third-party"


@dataclass(frozen=True, slots=True)
class StreamConsumer:
    """One durable consumer on the event stream, as the broker reports it."""

    name: str
    owner: Owner
    pending: int
    ack_pending: int
    redelivered: int
    delivered_seq: int | None
    ack_floor_seq: int | None
    filter: str | None


async def stream_consumers(js: Any, timeout_s: float = 5.0) -> list[StreamConsumer]:
    """Every durable consumer on the event stream (the wait bounded by ``timeout_s``)."""
    infos = await asyncio.wait_for(js.consumers_info(EVENTS_STREAM), timeout_s)
    return [StreamConsumer(
        name=str(info.name), owner=owner_of(str(info.name)),
        pending=int(info.num_pending or 0), ack_pending=int(info.num_ack_pending or 0),
        redelivered=int(info.num_redelivered or 0),
        delivered_seq=info.delivered.stream_seq if info.delivered else None,
        ack_floor_seq=info.ack_floor.stream_seq if info.ack_floor else None,
        filter=info.config.filter_subject if info.config else None,
    ) for info in infos]


def _export(consumers: list[StreamConsumer], exported: set[tuple[str, str]]) -> None:
    now = {(c.name, c.owner) for c in consumers}
    for labels in exported - now:  # deleted consumers disappear from the metrics
        for gauge in (PENDING, ACK_PENDING, REDELIVERED):
            gauge.remove(*labels)
    for c in consumers:
        PENDING.labels(c.name, c.owner).set(c.pending)
        ACK_PENDING.labels(c.name, c.owner).set(c.ack_pending)
        REDELIVERED.labels(c.name, c.owner).set(c.redelivered)
    exported.clear()
    exported.update(now)


async def export_stream_consumers(js: Any, stop: asyncio.Event, interval_s: float = 15.0
                                  ) -> None:
    """Keep the ``mnemos_stream_consumer_*`` gauges current until ``stop`` is set. A broker
    that does not answer, or any other failure, leaves the last values (logged); the next
    round tries again."""
    exported: set[tuple[str, str]] = set()
    while not stop.is_set():
        try:
            _export(await stream_consumers(js), exported)
        except NotFoundError:
            _export([], exported)  # no stream yet: no consumers
        except Exception as exc:  # metrics never take the gateway down
            if broker_failure(exc, "consumers info") is None:
                log.exception("stream_consumers_failed")
            else:
                log.warning("stream_consumers_unavailable", error=type(exc).__name__)
        await sleep_or_stop(stop, interval_s)
