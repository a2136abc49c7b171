"""The two security errors; they live in the one hierarchy of :mod:`libs.events.errors`.

``Unauthenticated`` (401) means "no valid credential": missing, malformed, unknown, wrong secret,
expired, revoked, bad token. Its message never says which, to an unauthenticated caller, beyond
a coarse ``reason`` code; the server logs the detail. ``Forbidden`` (403) means "a valid
credential, but not for this": the principal is known, the scope or namespace is not granted.
"""

from __future__ import annotations

from libs.events.errors import Forbidden, Unauthenticated

__all__ = ["Forbidden", "Unauthenticated"]
