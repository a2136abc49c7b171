"""Replies on the bus and in HTTP error bodies, and the headers that carry who is calling.

Every NATS request gets exactly one final reply, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {code, message, detail}}``; every non-2xx HTTP answer is
``{"error": {code, message, detail}}``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from libs.events.errors import MnemosError, error_from_code

__all__ = [
    "CALLER_HEADER",
    "CREDENTIAL_HEADER",
    "HTTP_PRINCIPAL_HEADER",
    "NAMESPACE_HEADER",
    "NATS_PRINCIPAL_HEADER",
    "STREAM_HEADER",
    "ErrorBody",
    "ErrorReply",
    "Reply",
    "decode_reply",
    "encode_error_reply",
    "encode_ok_reply",
]

HTTP_PRINCIPAL_HEADER: Final = "X-Mnemos-Principal"
"""HTTP header naming the caller where no credential is configured (see the README)."""
NATS_PRINCIPAL_HEADER: Final = "Mnemos-Principal"
"""NATS header naming the caller where no credential is configured."""
NAMESPACE_HEADER: Final = "Mnemos-Namespace"
"""Namespace of a request forwarded to ``mnemos.svc.<service>.<operation>``."""
CALLER_HEADER: Final = "Mnemos-Caller"
"""The authenticated principal (canonical JSON) of a forwarded request; set by the gateway."""
STREAM_HEADER: Final = "Mnemos-Stream"
"""Set to ``progress`` on intermediate messages of a streamed reply (the final one has none)."""
CREDENTIAL_HEADER: Final = "Authorization"
"""The credential of a request, on HTTP and on NATS alike: ``Bearer <API key or OIDC token>``."""


class ErrorBody(msgspec.Struct, frozen=True):
    """A typed error: stable ``code``, human ``message``, structured ``detail``."""

    code: str
    message: str
    detail: dict[str, Any]


class ErrorReply(msgspec.Struct, frozen=True):
    """Body of every non-2xx HTTP answer."""

    error: ErrorBody


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """A NATS reply: ``result`` when ``ok``, else ``error``."""

    ok: bool
    result: Any = None
    error: ErrorBody | None = None


class _Ok(msgspec.Struct):
    ok: bool
    result: Any


def encode_ok_reply(result: object) -> bytes:
    """``{"ok": true, "result": ...}`` as sent on NATS."""
    return msgspec.json.encode(_Ok(ok=True, result=result))


def encode_error_reply(error: MnemosError) -> bytes:
    """``{"ok": false, "error": {code, message, detail}}`` as sent on NATS."""
    return msgspec.json.encode({"ok": False, "error": error.to_dict()})


def decode_reply(raw: bytes) -> Any:
    """The ``result`` of a NATS reply, or its error raised as the typed :class:`MnemosError`."""
    try:
        reply = msgspec.json.decode(raw, type=Reply)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MnemosError(f"malformed reply: {exc}") from None
    if reply.ok:
        return reply.result
    error = reply.error or ErrorBody("internal", "error reply without an error", {})
    raise error_from_code(error.code, error.message, error.detail)
