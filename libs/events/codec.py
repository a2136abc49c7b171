"""The one codec: canonical JSON encoding of events, and decoding with upcasting.

Canonical bytes are compact JSON with object keys sorted at every level, UTF-8, timestamps in
RFC 3339 UTC. These exact bytes are what is published to the stream, what the audit chain hashes,
and what content-addressed ids are computed over.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar, cast

import blake3
import msgspec

from libs.events.errors import InvalidInput
from libs.events.model import Event, EventBase, event_types
from libs.events.text import check_storable
from libs.events.upcasting import upcast

T = TypeVar("T")

__all__ = [
    "canonical_bytes",
    "convert_params",
    "decode_event",
    "decode_json",
    "encode_event",
    "event_hash",
]

_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_TYPED_DECODER: Final = msgspec.json.Decoder(Event)
_HEADER_DECODER: Final = msgspec.json.Decoder(dict[str, Any])


class _Head(msgspec.Struct):
    type: str
    schema: int


_HEAD_DECODER: Final = msgspec.json.Decoder(_Head)


def canonical_bytes(value: object) -> bytes:
    """Canonical JSON of any msgspec-encodable value (sorted keys, compact)."""
    return _ENCODER.encode(value)


def encode_event(event: EventBase) -> bytes:
    """The bytes to publish for ``event`` (its canonical encoding)."""
    return _ENCODER.encode(event)


def event_hash(raw: bytes) -> str:
    """Hex blake3 of an event's stored bytes: the value the audit chain links."""
    return blake3.blake3(raw).hexdigest()


def decode_event(raw: bytes) -> Event:
    """Decode stored event bytes into the current typed event, upcasting older schemas.

    Raises :class:`InvalidInput` for bytes that are not a known event in any schema version.
    """
    try:
        head = _HEAD_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"not an event: {exc}") from None
    cls = event_types().get(head.type)
    if cls is None:
        raise InvalidInput(f"unknown event type {head.type!r}", type=head.type)
    try:
        if head.schema == cls.SCHEMA:
            return cast(Event, _TYPED_DECODER.decode(raw))
        lifted = upcast(_HEADER_DECODER.decode(raw), target=cls.SCHEMA)
        return cast(Event, msgspec.convert(lifted, Event))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"malformed {head.type} event: {exc}", type=head.type) from None


def decode_json(body: bytes, cls: type[T], what: str = "request") -> T:
    """Decode a JSON body into ``cls`` at the edge: malformed JSON, invalid UTF-8, a value that
    violates the type, or text Postgres cannot store are all :class:`InvalidInput`."""
    try:
        value = msgspec.json.decode(body, type=cls)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput("the body is not valid UTF-8") from None
    check_storable(value)
    return value


def _is_datetime(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(_is_datetime(member) for member in kind.types)
    return isinstance(kind, msgspec.inspect.DateTimeType)


@functools.cache
def _timestamp_fields(cls: type) -> frozenset[str]:
    """Wire names of ``cls``'s timestamp fields (empty for anything but a struct)."""
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType):
        return frozenset()
    return frozenset(f.encode_name for f in info.fields if _is_datetime(f.type))


_NUMBER: Final = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|nan)",
                            re.IGNORECASE)


def convert_params(values: Mapping[str, Any], cls: type[T], what: str = "request", *,
                   strict: bool = False) -> T:
    """Build ``cls`` from already-parsed values, with the same checks as :func:`decode_json`:
    query-string text is coerced to each field's type (``strict=False``); values decoded from
    JSON keep their JSON types (``strict=True``). A timestamp is RFC 3339 text in either case:
    lax coercion would read a number as Unix seconds, which the schema (``date-time``) forbids.
    """
    if not strict:
        for name in _timestamp_fields(cast(type, cls)):
            value = values.get(name)
            if isinstance(value, str) and _NUMBER.match(value):
                raise InvalidInput(f"invalid {what}: {name} must be an RFC 3339 date-time",
                                   field=name)
    try:
        value = msgspec.convert(dict(values), cls, strict=strict)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {exc}") from None
    check_storable(value)
    return value
