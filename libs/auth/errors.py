"""The two security errors, in the one hierarchy of :mod:`libs.events.errors`.

``Unauthenticated`` (401) means "no valid credential": missing, malformed, unknown, wrong secret,
expired, revoked, bad token. Its message never says which, to an unauthenticated caller, beyond
a coarse ``reason`` code; the server logs the detail. ``Forbidden`` (403) means "a valid
credential, but not for this": the principal is known, the scope or namespace is not granted.

These classes belong in ``libs/events/errors.py`` (and in its ``_BY_CODE`` table); they live
here until that file is free to change, and keep their codes when they move.
"""

from __future__ import annotations

from libs.events.errors import MnemosError

__all__ = ["Forbidden", "Unauthenticated"]


class Unauthenticated(MnemosError):
    """No valid credential was presented (HTTP 401, NATS error ``unauthenticated``)."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(MnemosError):
    """The credential is valid but does not grant this scope on this namespace (HTTP 403)."""

    code = "forbidden"
    http_status = 403
