"""The leader consumer that folds registry events into :class:`RegistryService` (a
:class:`libs.consumer.ConsumerHandler`): the service never changes its state directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from libs.consumer import Delivery, Takeover
from libs.consumer.stream import reread_if_still_served, stream_bounds
from libs.events import EventBase, MnemosError, decode_event
from libs.events.model import (
    ModelChanged,
    ModelListed,
    ModelRestored,
    ModelRetired,
    ModelSuspect,
    ProviderSynced,
    ProviderSyncFailed,
    RankingPublished,
)
from libs.runtime.logging import get_logger
from services.registry_sync.service import RegistryService

__all__ = ["RegistryFollower"]

log = get_logger(__name__)

_REGISTRY_PREFIXES: Final = ("mnemos.evt.system.model.", "mnemos.evt.system.provider.",
                             "mnemos.evt.system.ranking.")
_REGISTRY_TYPES: Final = (ModelListed, ModelChanged, ModelSuspect, ModelRetired, ModelRestored,
                          ProviderSynced, ProviderSyncFailed, RankingPublished)


class RegistryFollower:
    """The leader consumer folding registry events into the service (a
    :class:`libs.consumer.ConsumerHandler`; the checkpoint lives in memory, so every session
    folds from the start of the stream)."""

    def __init__(self, service: RegistryService) -> None:
        self.service = service

    async def start(self, conn: Any, takeover: Takeover) -> int:
        _, last = await stream_bounds(self.service.js)
        self.service.reset(last)
        log.info("registry_folding", stream_last_seq=last)
        return 0

    async def prepare(self, deliveries: Sequence[Delivery]) -> list[tuple[int, EventBase]]:
        items: list[tuple[int, EventBase]] = []
        for delivery in deliveries:
            if not delivery.subject.startswith(_REGISTRY_PREFIXES):
                continue
            try:
                event = decode_event(delivery.data)
            except MnemosError as exc:  # the projector dead-letters it; the fold passes it
                log.error("registry_event_undecodable", seq=delivery.seq, error=exc.message)
                continue
            if isinstance(event, _REGISTRY_TYPES):
                items.append((delivery.seq, event))
        return items

    async def apply(self, conn: Any, deliveries: Sequence[Delivery],
                    prepared: list[tuple[int, EventBase]]) -> int:
        last = deliveries[-1].seq if deliveries else self.service.folded.seq
        self.service.fold(prepared, last)
        return last

    async def idle(self, conn: Any) -> None:
        return None

    async def on_gap(self, conn: Any, expected: int, got: int) -> None:
        await reread_if_still_served(self.service.js, expected, got)
        log.warning("registry_stream_gap", expected=expected, got=got)

    async def close(self) -> None:
        self.service.deactivate()
