"""Decoding a batch once: each delivery becomes its event (or the reason it is poison), the
content it introduces and that content's hash, carried through embedding and applying."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libs.consumer import Delivery
from libs.events import Event, MnemosError, content_hash, decode_event
from libs.readmodel.projections import check_subject, content_of, is_projected

__all__ = ["Decoded", "decode_batch", "texts_by_digest"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """One delivery, decoded and classified: ``error`` set for bytes that can never project;
    ``text``/``digest`` the content it introduces (to embed), if any."""

    delivery: Delivery
    event: Event | None
    error: MnemosError | None
    projected: bool = False
    text: str | None = None
    digest: str | None = None


def _decode(delivery: Delivery) -> Decoded:
    try:
        event = decode_event(delivery.data)
    except MnemosError as exc:
        return Decoded(delivery, None, exc)
    try:
        check_subject(event, delivery.subject)
    except MnemosError as exc:
        return Decoded(delivery, event, exc)
    if not is_projected(event):
        return Decoded(delivery, event, None)
    text = content_of(event)
    return Decoded(delivery, event, None, True, text,
                   None if text is None else content_hash(text))


def decode_batch(deliveries: Sequence[Delivery]) -> list[Decoded]:
    """Every delivery decoded and classified, in order."""
    return [_decode(delivery) for delivery in deliveries]


def texts_by_digest(decoded: Sequence[Decoded]) -> dict[str, str]:
    """The contents a batch introduces, by content hash (each once)."""
    return {item.digest: item.text for item in decoded
            if item.error is None and item.text is not None and item.digest is not None}
