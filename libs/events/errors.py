"""The one error hierarchy of Mnemos.

Every failure a caller can see is a :class:`MnemosError` with a stable machine-readable ``code``.
The HTTP status and the NATS error reply are both derived from the class, once, here.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "DeadLettered",
    "Forbidden",
    "InvalidInput",
    "MnemosError",
    "NotFound",
    "PayloadTooLarge",
    "Unauthenticated",
    "Unavailable",
    "UnknownCommand",
    "error_from_code",
]


class MnemosError(Exception):
    """Base of every error Mnemos reports to a caller."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        """The wire form of the error, as sent in HTTP bodies and NATS replies."""
        return {"code": self.code, "message": self.message, "detail": self.detail}


class InvalidInput(MnemosError):
    """The request is malformed or violates a rule; nothing was changed."""

    code = "invalid_input"
    http_status = 400


class UnknownCommand(InvalidInput):
    """The command name is not one Mnemos knows."""

    code = "unknown_command"
    http_status = 404


class Unauthenticated(MnemosError):
    """No valid credential was presented (HTTP 401, NATS error ``unauthenticated``): missing,
    malformed, unknown, wrong secret, expired, revoked or a bad token; the message never says
    which beyond a coarse ``reason``."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(MnemosError):
    """The credential is valid but does not grant this scope on this namespace (HTTP 403)."""

    code = "forbidden"
    http_status = 403


class NotFound(MnemosError):
    """The addressed memory (or version) does not exist in this namespace."""

    code = "not_found"
    http_status = 404


class Conflict(MnemosError):
    """Optimistic concurrency failed: the aggregate moved past the expected version."""

    code = "conflict"
    http_status = 409


class PayloadTooLarge(InvalidInput):
    """The request or one of its fields exceeds a configured size limit."""

    code = "payload_too_large"
    http_status = 413


class DeadLettered(MnemosError):
    """An event the answer depends on was acknowledged but could not be projected (it is in the
    dead-letter stream): the read models do not reflect it, so they are not served as if they
    did. Retrying does not help; an operator fixes the cause and replays."""

    code = "dead_lettered"
    http_status = 500


class Unavailable(MnemosError):
    """A dependency (broker, database, projection) did not answer in time; safe to retry."""

    code = "unavailable"
    http_status = 503


_BY_CODE: dict[str, type[MnemosError]] = {
    cls.code: cls
    for cls in (
        MnemosError,
        InvalidInput,
        UnknownCommand,
        NotFound,
        Conflict,
        DeadLettered,
        Unauthenticated,
        Forbidden,
        PayloadTooLarge,
        Unavailable,
    )
}


def error_from_code(code: str, message: str, detail: dict[str, Any] | None = None) -> MnemosError:
    """Rebuild a typed error from its wire form (used by clients of the NATS API)."""
    err = _BY_CODE.get(code, MnemosError)(message, **(detail or {}))
    return err
