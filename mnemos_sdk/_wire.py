"""From an operation of the catalog and its typed request to bytes on a transport, and back.

Everything here is derived from :data:`libs.events.OPERATIONS`: the NATS subject, the HTTP route
(a POST route with a JSON body where the operation has one, else its GET route with the fields
in the query string under their wire names), and the typed reply. Nothing is written per
operation, so an operation added to the catalog is reachable by the SDK without a change here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import msgspec

from libs.events import (
    CommandBase,
    ErrorBody,
    InvalidInput,
    MnemosError,
    Operation,
    decode_json,
    error_from_code,
    new_command_id,
    path_fields,
)
from libs.events.subjects import command_subject, query_subject

__all__ = [
    "HttpCall",
    "checked",
    "decode_http",
    "decode_nats",
    "encode_body",
    "ensure_command_id",
    "http_call",
    "namespace_for",
    "nats_subject",
]

T = TypeVar("T")
_ENCODER: Final = msgspec.json.Encoder()


class _NatsReply(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    ok: bool
    result: T | None = None
    error: ErrorBody | None = None


class _HttpError(msgspec.Struct, frozen=True):
    error: ErrorBody


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request: method, path, query parameters or JSON body."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    body: bytes | None


def namespace_for(op: Operation, ns: str | None) -> str:
    """The namespace the operation runs in: its fixed one (e.g. ``system``), else ``ns``."""
    if op.namespace is not None:
        return op.namespace
    if ns is None:
        raise InvalidInput(f"{op.name} needs a namespace: pass ns= or set the client's default",
                           field="ns")
    return ns


def ensure_command_id(op: Operation, request: msgspec.Struct) -> msgspec.Struct:
    """A command with a ``command_id`` fixed before the first attempt, so every retry sends the
    same id and the gateway never appends twice."""
    if op.kind == "command" and isinstance(request, CommandBase) and request.command_id is None:
        return msgspec.structs.replace(request, command_id=new_command_id())
    return request


def checked(op: Operation, request: msgspec.Struct) -> msgspec.Struct:
    """``request`` as the gateway will decode it, refused with :class:`InvalidInput` (and not
    sent) when the gateway would refuse it or when it would not arrive unchanged: JSON has no
    ``inf``/``nan`` (msgspec would send ``null``) and the contract's numbers must round-trip."""
    decoded = decode_json(encode_body(request), op.request, f"{op.name} request")
    if msgspec.to_builtins(decoded) != msgspec.to_builtins(request):
        raise InvalidInput(f"{op.name}: a value does not survive JSON encoding unchanged "
                           "(a non-finite float, or a number out of range?)", operation=op.name)
    return decoded


def nats_subject(op: Operation, ns: str | None) -> str:
    """``mnemos.cmd.<ns>.<name>`` or ``mnemos.qry.<ns>.<name>``, validated."""
    build = command_subject if op.kind == "command" else query_subject
    return build(namespace_for(op, ns), op.name)


def encode_body(request: msgspec.Struct) -> bytes:
    """The request as the JSON body both transports carry."""
    return _ENCODER.encode(request)


@functools.cache
def _defaults(cls: type[msgspec.Struct]) -> Mapping[str, Any]:
    found: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if field.default is not msgspec.NODEFAULT:
            found[field.encode_name] = msgspec.to_builtins(field.default)
        elif field.default_factory is not msgspec.NODEFAULT:
            found[field.encode_name] = msgspec.to_builtins(field.default_factory())
    return found


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def http_call(op: Operation, ns: str | None, request: msgspec.Struct) -> HttpCall:
    """The HTTP request of ``op``: a POST route with the JSON body when the operation has one,
    else its first GET route with path fields in the path and the rest in the query string."""
    route = next((r for r in op.routes if r.method == "POST"), op.routes[0])
    values: dict[str, Any] = msgspec.to_builtins(request)
    path = route.path
    if "{ns}" in path:
        path = path.replace("{ns}", namespace_for(op, ns))
    for name in path_fields(route.path):
        value = values.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{op.name} needs {name}", field=name)
        path = path.replace(f"{{{name}}}", value)
    if route.method == "POST":
        return HttpCall("POST", path, (), _ENCODER.encode(request))
    defaults = _defaults(type(request))
    params: list[tuple[str, str]] = []
    for name, value in values.items():
        if name in path_fields(route.path) or value is None or defaults.get(name) == value:
            continue
        items = value if isinstance(value, list | tuple) else [value]
        params += [(name, _text(item)) for item in items]
    return HttpCall("GET", path, tuple(params), None)


def _raise(error: ErrorBody) -> MnemosError:
    return error_from_code(error.code, error.message, error.detail)


def decode_nats(op: Operation, raw: bytes) -> Any:
    """The typed result of a NATS reply, or its error raised as the typed :class:`MnemosError`."""
    try:
        reply = msgspec.json.decode(raw, type=_NatsReply[op.reply])  # type: ignore[name-defined]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MnemosError(f"malformed reply to {op.name}: {exc}") from None
    if reply.ok:
        return reply.result
    raise _raise(reply.error or ErrorBody("internal", "error reply without an error", {}))


def decode_http(op: Operation, status: int, raw: bytes) -> Any:
    """The typed reply of an HTTP answer, or its error raised as the typed :class:`MnemosError`."""
    if status >= 400:
        try:
            error = msgspec.json.decode(raw, type=_HttpError).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            text = raw[:200].decode("utf-8", "replace")
            error = ErrorBody("unavailable" if status in (502, 503, 504) else "internal",
                              f"HTTP {status}: {text}", {"status": status})
        raise _raise(error)
    try:
        return msgspec.json.decode(raw, type=op.reply)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MnemosError(f"malformed reply to {op.name}: {exc}") from None
