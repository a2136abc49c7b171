"""Identifiers: time-ordered ids for commands and events, content-addressed ids for versions.

An event id is *derived* from the command that caused it (namespace, command id, index), so a
retried command yields the very same event id. The event id is also the ``Nats-Msg-Id`` header,
which lets JetStream's duplicate window drop the retry without a lookup.
"""

from __future__ import annotations

import uuid
from typing import Final

import blake3
import msgspec
import uuid_utils

from libs.events.errors import InvalidInput

__all__ = [
    "command_digest",
    "content_hash",
    "derive_event_id",
    "new_command_id",
    "new_memory_id",
    "uuid7_timestamp_ms",
    "validate_command_id",
]

_EVENT_ID_DOMAIN: Final = b"mnemos.event-id.v1\x00"
_COMMAND_DIGEST_DOMAIN: Final = b"mnemos.command-digest.v1\x00"
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")


def new_command_id() -> str:
    """A fresh UUIDv7 command id, for callers that did not supply one."""
    return str(uuid_utils.uuid7())


def new_memory_id() -> str:
    """A fresh UUIDv7 memory (aggregate) id."""
    return str(uuid_utils.uuid7())


def validate_command_id(value: object) -> str:
    """Return ``value`` if it is a canonical lowercase UUIDv7 string, else raise InvalidInput.

    Command ids must be UUIDv7 because the derived event id reuses their timestamp: the event
    id is then both deterministic (safe retries) and time-ordered.
    """
    if not isinstance(value, str) or len(value) != 36:
        raise InvalidInput("command_id must be a UUIDv7 string", field="command_id")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidInput("command_id must be a UUIDv7 string", field="command_id") from None
    if parsed.version != 7 or str(parsed) != value:
        raise InvalidInput(
            "command_id must be a lowercase canonical UUIDv7", field="command_id", value=value
        )
    return value


def uuid7_timestamp_ms(value: str) -> int:
    """The Unix millisecond timestamp carried by a UUIDv7."""
    return uuid.UUID(value).int >> 80


def derive_event_id(ns: str, command_id: str, index: int = 0) -> str:
    """The UUIDv7 id of the ``index``-th event caused by ``command_id`` in ``ns``.

    Layout: 48-bit timestamp of the command id, version 7, 74 bits of
    ``blake3(domain ‖ ns ‖ command_id ‖ index)``, RFC 4122 variant.
    """
    digest = blake3.blake3(
        _EVENT_ID_DOMAIN + f"{ns}\x00{command_id}\x00{index}".encode()
    ).digest(length=10)
    rand = int.from_bytes(digest, "big") >> 6  # 74 bits
    rand_a = rand >> 62  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (uuid7_timestamp_ms(command_id) << 80) | (0x7 << 76) | (rand_a << 64)
    value |= (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def content_hash(content: str) -> str:
    """Hex blake3 of UTF-8 text: the identity of a piece of content (embedding cache key)."""
    return blake3.blake3(content.encode("utf-8")).hexdigest()


def command_digest(ns: str, name: str, command: object) -> str:
    """Hex blake3 fingerprint of a decoded command: its namespace, name and every field.

    A retry sends the same command, so it has the same digest; the same command id with another
    digest is a different command, which is a conflict, never a second event.
    """
    body = _CANONICAL.encode({"ns": ns, "name": name, "command": command})
    return blake3.blake3(_COMMAND_DIGEST_DOMAIN + body).hexdigest()
