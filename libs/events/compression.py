"""The compression receipt and the ``MemoryCompressed`` payload (DESIGN.md section 4).

A receipt is what the compressor measured about one compression of one memory version: sizes in
tokens of a named tokenizer, blake3 of input and output, what was removed and kept (by character
offsets into the input), every protected span and whether it survived, the measured quality
components, the per-purpose verdicts, and the contest that picked the engine.

Shapes are kept flat (tuples of small structs, no nested unions) so the receipt is easy to
project into tables. Every number is an ``int`` or a finite ``float`` rounded by the compressor
to :data:`DECIMALS` places, so it round-trips exactly through canonical JSON.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

import blake3
import msgspec

from libs.events.ids import uuid7_timestamp_ms

__all__ = [
    "COMPRESSOR_PRINCIPAL",
    "DECIMALS",
    "RECEIPT_ID_HEX_CHARS",
    "TRIGGERS",
    "CompressionReceipt",
    "ContestEntry",
    "MemoryCompressedData",
    "OutputSource",
    "ProtectedSpan",
    "PurposeVerdict",
    "QualityComponent",
    "SpanNote",
    "Trigger",
    "compression_command_id",
]

COMPRESSOR_PRINCIPAL: Final = "mnemos-compressor"
"""The actor principal of every ``MemoryCompressed`` event."""

_COMMAND_DOMAIN: Final = b"mnemos.compression-command.v1\x00"

DECIMALS: Final = 6
"""Places every float in a receipt is rounded to (its shortest repr then round-trips exactly)."""

RECEIPT_ID_HEX_CHARS: Final = 32
"""Receipt ids are 128 bits of blake3, like version ids."""

Trigger = Literal["on_write", "context", "rehydration"]
"""Why a compression ran: a new version, a context assembly, or a rehydration."""

TRIGGERS: Final[tuple[Trigger, ...]] = ("on_write", "context", "rehydration")
"""Every :data:`Trigger`, in a stable order."""

Offset = Annotated[int, msgspec.Meta(ge=0)]
"""A character (code point) offset into the input text."""

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
"""A measured fraction in [0, 1]."""

ReceiptId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
"""A content-addressed receipt id (see ``services.compressor.receipt``)."""


class _Wire(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the receipt's parts: frozen, keyword-only, strict on decode."""


class SpanNote(_Wire, frozen=True):
    """A range of the input that was removed or deliberately kept, and why."""

    start: Offset
    end: Offset
    reason: str


class ProtectedSpan(_Wire, frozen=True):
    """A protected span of the input (number, date, identifier, ...) and whether it survived."""

    kind: str
    start: Offset
    end: Offset
    text: str
    survived: bool


class OutputSource(_Wire, frozen=True):
    """Where one range of the output comes from: the input ranges it was taken or derived from."""

    out_start: Offset
    out_end: Offset
    sources: tuple[tuple[Offset, Offset], ...]


class QualityComponent(_Wire, frozen=True):
    """One measured component of quality; ``value`` is None when it could not be measured."""

    name: str
    value: Unit | None
    method: str


class PurposeVerdict(_Wire, frozen=True):
    """A purpose the compressed form is (or is not) safe for, with the reason."""

    purpose: str
    reason: str


class ContestEntry(_Wire, frozen=True):
    """One candidate of the contest: its engine, outcome and the reason for it."""

    engine: str
    engine_version: str
    outcome: Literal[
        "won", "gate_failed", "below_floor", "no_output", "error", "timeout", "worse_score"
    ]
    reason: str
    score: float | None = None
    compressed_tokens: int | None = None


class CompressionReceipt(_Wire, frozen=True):
    """Everything measured about one compression (the fields of DESIGN.md section 4)."""

    receipt_id: ReceiptId
    memory_id: str
    version_id: str
    engine: str
    engine_version: str
    trigger: Trigger
    compressor_version: str
    settings: dict[str, str | int | float | bool]
    tokenizer: str
    original_tokens: Annotated[int, msgspec.Meta(ge=0)]
    compressed_tokens: Annotated[int, msgspec.Meta(ge=0)]
    ratio: Annotated[float, msgspec.Meta(ge=0.0)]
    input_hash: str
    output_hash: str
    quality_score: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
    quality_formula: str
    removed: tuple[SpanNote, ...] = ()
    preserved: tuple[SpanNote, ...] = ()
    protected: tuple[ProtectedSpan, ...] = ()
    output_sources: tuple[OutputSource, ...] = ()
    quality: tuple[QualityComponent, ...] = ()
    safe_for: tuple[PurposeVerdict, ...] = ()
    not_safe_for: tuple[PurposeVerdict, ...] = ()
    risk_factors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    contest: tuple[ContestEntry, ...] = ()

    def is_safe_for(self, purpose: str) -> bool:
        """True when this receipt lists ``purpose`` among the purposes it is safe for."""
        return any(verdict.purpose == purpose for verdict in self.safe_for)


class MemoryCompressedData(_Wire, frozen=True):
    """Payload of the ``MemoryCompressed`` event: the compressed text and its receipt.

    The compressed text travels with the receipt so that a replay reproduces the compressed form
    without running any engine again.
    """

    content: str
    receipt: CompressionReceipt


def compression_command_id(source_command_id: str, receipt_id: str) -> str:
    """The command id of the ``MemoryCompressed`` event of receipt ``receipt_id``.

    A UUIDv7 with the timestamp of the command that created the version (``source_command_id``)
    and 74 bits of ``blake3(domain || source || receipt id)``: the same compression always has the
    same command id, hence (through :func:`libs.events.ids.derive_event_id`) the same event id and
    ``Nats-Msg-Id``, so a re-run publishes nothing new.
    """
    digest = blake3.blake3(
        _COMMAND_DOMAIN + f"{source_command_id}\x00{receipt_id}".encode()).digest(length=10)
    rand = int.from_bytes(digest, "big") >> 6
    value = (uuid7_timestamp_ms(source_command_id) << 80) | (0x7 << 76) | ((rand >> 62) << 64)
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))
