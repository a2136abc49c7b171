"""Signed checkpoints: an Ed25519 signature over the chain head (sequence, link, time).

The signed bytes are the UTF-8 text (see PROOF.md)::

    mnemos-audit-checkpoint/v1\\n
    seq=<decimal sequence>\\n
    link=<64 lowercase hex digits>\\n
    at=<the checkpoint's "at" string, RFC 3339 UTC>\\n

Anyone holding a checkpoint and the auditor's public key can check that a chain still extends
it: a truncated tail lacks the signed sequence, a recomputed chain has a different link there.
Pure: no files, no clock (``at`` is passed in). Keys and files are in :mod:`.files`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "checkpoint_due",
    "checkpoint_message",
    "format_at",
    "parse_at",
    "public_key_hex",
    "sign_checkpoint",
    "verify_checkpoint",
]

CHECKPOINT_FORMAT: Final = "mnemos-audit-checkpoint/v1"
"""First line of the signed text, and the ``format`` field of checkpoint files."""



class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A signed chain head, as written to checkpoint files and published as an event."""

    format: str = CHECKPOINT_FORMAT
    seq: int
    link: str
    at: str
    public_key: str
    signature: str


def format_at(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: the one spelling of ``at`` that is signed."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_at(at: str) -> datetime:
    """The moment a :func:`format_at` string names."""
    return datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def checkpoint_message(seq: int, link_hex: str, at: str) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"{CHECKPOINT_FORMAT}\nseq={seq}\nlink={link_hex}\nat={at}\n".encode()


def public_key_hex(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key of ``key``, hex."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, link: bytes, at: str) -> Checkpoint:
    """Sign the head ``(seq, link)`` as of ``at``."""
    signature = key.sign(checkpoint_message(seq, link.hex(), at))
    return Checkpoint(seq=seq, link=link.hex(), at=at, public_key=public_key_hex(key),
                      signature=signature.hex())


def verify_checkpoint(checkpoint: Checkpoint, trusted_key_hex: str | None = None) -> bool:
    """True if the signature is valid for the checkpoint's own key (or ``trusted_key_hex``)."""
    key_hex = trusted_key_hex or checkpoint.public_key
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        key.verify(bytes.fromhex(checkpoint.signature),
                   checkpoint_message(checkpoint.seq, checkpoint.link, checkpoint.at))
    except (InvalidSignature, ValueError):
        return False
    return True


def checkpoint_due(head_seq: int, last_seq: int, seconds_since_last: float, new_events: int,
                   every_events: int, interval_s: float) -> bool:
    """Whether the head should be signed now.

    Every ``every_events`` links, or after ``interval_s`` if events other than the auditor's
    own checkpoint announcements arrived (otherwise each announcement would trigger the next
    checkpoint forever on an idle system).
    """
    if head_seq <= last_seq:
        return False
    if head_seq - last_seq >= every_events:
        return True
    return new_events > 0 and seconds_since_last >= interval_s
