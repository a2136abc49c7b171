"""The audit hash chain, as pure functions: no I/O, no clock, no keys.

``link_n = blake3(link_{n-1} ‖ seq_n ‖ blake3(raw_n))`` where ``seq_n`` is the JetStream stream
sequence as 8 bytes big-endian, ``raw_n`` the exact message bytes stored in the stream (the
canonical event encoding) and ``link_0`` the fixed :data:`GENESIS_LINK`. Every message of the
event stream is linked in sequence order, including ones that do not decode: the chain hashes
bytes, it never interprets them.

Diagnosis of a mismatch between what the stream says now and what the chain stored is also
pure, so each kind of tampering is named by tested logic (see :class:`BreakKind`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import blake3
import msgspec

from libs.events import Break, BreakKind, MnemosError, event_hash

__all__ = [
    "GENESIS_HEAD",
    "GENESIS_LINK",
    "SEQ_BYTES",
    "ChainMismatch",
    "ChainRow",
    "Extension",
    "Head",
    "StoredRow",
    "diagnose",
    "event_digest",
    "event_id_of",
    "extend",
    "next_link",
]

GENESIS_LINK: Final = blake3.blake3(b"mnemos.audit-chain.genesis.v1").digest()
"""``link_0``: blake3 of the ASCII string ``mnemos.audit-chain.genesis.v1``."""

SEQ_BYTES: Final = 8
"""Width of the big-endian stream sequence inside each link's pre-image."""


class ChainMismatch(MnemosError):
    """The stored chain and the stream (or a checkpoint) disagree: run a verification."""

    code = "chain_mismatch"
    http_status = 409


def event_digest(raw: bytes) -> bytes:
    """The 32-byte blake3 of stored event bytes (``libs.events.event_hash``, as bytes)."""
    return bytes.fromhex(event_hash(raw))


def next_link(prev: bytes, seq: int, digest: bytes) -> bytes:
    """``blake3(prev ‖ seq as u64 big-endian ‖ digest)``."""
    return blake3.blake3(prev + seq.to_bytes(SEQ_BYTES, "big") + digest).digest()


class _EventId(msgspec.Struct):
    id: str


_ID_DECODER: Final = msgspec.json.Decoder(_EventId)


def event_id_of(raw: bytes) -> str | None:
    """The envelope ``id`` of stored bytes, or None when they are not an event.

    Only used to index chain rows for ``prove``; the chain itself never depends on it.
    """
    try:
        return _ID_DECODER.decode(raw).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class Head:
    """The end of the chain: the last linked sequence (0 = genesis) and its link."""

    seq: int
    link: bytes


GENESIS_HEAD: Final = Head(0, GENESIS_LINK)


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One link as stored: ``prev_link`` is kept so the store can refuse a fork."""

    seq: int
    event_id: str | None
    event_hash: bytes
    prev_link: bytes
    link: bytes


@dataclass(frozen=True, slots=True)
class Extension:
    """What :func:`extend` made of a batch.

    ``gap`` is ``(expected_seq, got_seq)`` when the batch skipped a sequence; ``rows`` then
    holds only the links before the gap.
    """

    rows: list[ChainRow]
    head: Head
    skipped: int
    gap: tuple[int, int] | None


def extend(head: Head, messages: Iterable[tuple[int, bytes]]) -> Extension:
    """Link ``(seq, raw)`` messages after ``head``, in order.

    Sequences at or below the head are redeliveries and are skipped; the first sequence that
    is not ``head.seq + 1`` stops the extension and is reported as a gap.
    """
    rows: list[ChainRow] = []
    seq, link = head.seq, head.link
    skipped = 0
    for msg_seq, raw in messages:
        if msg_seq <= seq:
            skipped += 1
            continue
        if msg_seq != seq + 1:
            return Extension(rows, Head(seq, link), skipped, (seq + 1, msg_seq))
        digest = event_digest(raw)
        new_link = next_link(link, msg_seq, digest)
        rows.append(ChainRow(msg_seq, event_id_of(raw), digest, link, new_link))
        seq, link = msg_seq, new_link
    return Extension(rows, Head(seq, link), skipped, None)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A chain row read back for verification."""

    seq: int
    event_id: str | None
    event_hash: bytes
    link: bytes


def diagnose(prev: bytes, seq: int, raw: bytes, stored: StoredRow) -> tuple[bytes, Break | None]:
    """Recompute link ``seq`` from the stream bytes and compare it with the stored row.

    Returns the recomputed link and, when they disagree, a :class:`Break` naming which part
    changed: the stored link, the stored event hash, or the event bytes in the stream.
    """
    digest = event_digest(raw)
    expected = next_link(prev, seq, digest)
    if digest == stored.event_hash and expected == stored.link:
        return expected, None
    if digest == stored.event_hash:
        return expected, Break(
            kind=BreakKind.STORED_LINK_EDITED, seq=seq, event_id=stored.event_id,
            expected=expected.hex(), found=stored.link.hex(),
            detail=f"stored link at seq {seq} is not blake3(prev ‖ seq ‖ event hash); the event "
            "hash matches the stream, so the link column was edited",
        )
    if expected == stored.link:
        return expected, Break(
            kind=BreakKind.STORED_HASH_EDITED, seq=seq, event_id=stored.event_id,
            expected=digest.hex(), found=stored.event_hash.hex(),
            detail=f"stored event hash at seq {seq} differs from the stream while the stored "
            "link is correct: the event_hash column was edited",
        )
    if next_link(prev, seq, stored.event_hash) == stored.link:
        return expected, Break(
            kind=BreakKind.EVENT_BYTES_CHANGED, seq=seq, event_id=stored.event_id,
            expected=stored.event_hash.hex(), found=digest.hex(),
            detail=f"the stream's bytes at seq {seq} hash to a different value than when they "
            "were chained: the event was altered in the stream (expected = chained event "
            "hash, found = hash of the bytes the stream serves now)",
        )
    return expected, Break(
        kind=BreakKind.CHAIN_ROW_EDITED, seq=seq, event_id=stored.event_id,
        expected=expected.hex(), found=stored.link.hex(),
        detail=f"chain row {seq}: neither its link nor its event hash match the stream, and "
        "the row is not self-consistent",
    )
