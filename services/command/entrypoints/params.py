"""From an HTTP request to an operation's request struct, decoded once.

GET: the struct's fields come from the query string under their wire names (a list field may
repeat), text coerced to each field's type; POST: from the JSON body. Path segments (``{name}``
in the route, except ``{ns}``) fill fields too, and a body or query may not disagree with them.
Unknown parameters are refused, like unknown body fields, so a typo fails loudly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final, get_args, get_origin

import msgspec
from starlette.datastructures import QueryParams

from libs.events import InvalidInput, PayloadTooLarge, convert_params, decode_json

__all__ = ["field_kinds", "from_body", "from_query", "read_body"]

_SEQUENCES: Final = (list, tuple, set, frozenset)


@functools.cache
def field_kinds(cls: type[msgspec.Struct]) -> Mapping[str, bool]:
    """Each wire name of ``cls`` -> whether the field holds several values."""
    kinds: dict[str, bool] = {}
    for field in msgspec.structs.fields(cls):
        kinds[field.encode_name] = _is_sequence(field.type)
    return kinds


def _is_sequence(tp: Any) -> bool:
    origin = get_origin(tp)
    if origin in _SEQUENCES:
        return True
    return any(_is_sequence(arg) for arg in get_args(tp) if arg is not type(None))


def _merge_path(values: dict[str, Any], path: Mapping[str, str]) -> dict[str, Any]:
    for name, value in path.items():
        if name in values and values[name] != value:
            raise InvalidInput(f"{name} differs from the path", field=name)
        values[name] = value
    return values


def from_query(cls: type[msgspec.Struct], query: QueryParams, path: Mapping[str, str]) -> Any:
    """The request of a GET route."""
    kinds = field_kinds(cls)
    values: dict[str, Any] = {}
    for name in query:
        if name not in kinds:
            raise InvalidInput(f"unknown parameter {name!r}", field=name, known=sorted(kinds))
        found = query.getlist(name)
        if not kinds[name] and len(found) > 1:
            raise InvalidInput(f"parameter {name!r} given {len(found)} times", field=name)
        values[name] = found if kinds[name] else found[0]
    typed = convert_params(_merge_path(values, path), cls)
    for name in values:  # a given parameter has a value; "null" is not a way to omit one
        if getattr(typed, _attribute(cls, name)) is None:
            raise InvalidInput(f"parameter {name!r} has no value; omit it instead", field=name)
    return typed


@functools.cache
def _attributes(cls: type[msgspec.Struct]) -> Mapping[str, str]:
    return {field.encode_name: field.name for field in msgspec.structs.fields(cls)}


def _attribute(cls: type[msgspec.Struct], wire: str) -> str:
    return _attributes(cls)[wire]


def from_body(cls: type[msgspec.Struct], body: bytes, path: Mapping[str, str]) -> Any:
    """The request of a POST route."""
    if not path:
        return decode_json(body or b"{}", cls)
    values = decode_json(body or b"{}", dict[str, Any], "body")
    return convert_params(_merge_path(values, path), cls, strict=True)


async def read_body(receive_stream: Any, declared: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
    size, chunks = 0, []
    async for chunk in receive_stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
