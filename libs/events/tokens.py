"""Validation of the tokens that become parts of NATS subjects.

A namespace or id is placed verbatim into a subject, so anything outside ``[a-z0-9_-]`` (dots,
wildcards ``*``/``>``, whitespace) could address other subjects. Such input is rejected, never
escaped.
"""

from __future__ import annotations

import re
from typing import Final

from libs.events.errors import InvalidInput

__all__ = [
    "MAX_TOKEN_LENGTH",
    "RESERVED_NAMESPACES",
    "validate_id",
    "validate_namespace",
    "validate_token",
    "validate_writable_namespace",
]

MAX_TOKEN_LENGTH: Final = 64
"""Longest namespace or id accepted; keeps subjects well under NATS limits."""

RESERVED_NAMESPACES: Final = frozenset({"system"})
"""Namespaces Mnemos writes itself (``system`` holds the audit chain's checkpoints): no user
command may write there."""

_TOKEN: Final = re.compile(r"[a-z0-9_-]{1,64}")


def validate_token(value: object, what: str) -> str:
    """Return ``value`` if it is a valid subject token, else raise :class:`InvalidInput`."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else repr(value)[:80]
        raise InvalidInput(
            f"{what} must match [a-z0-9_-]{{1,{MAX_TOKEN_LENGTH}}}",
            field=what,
            value=shown,
        )
    return value


def validate_namespace(ns: object) -> str:
    """Validate a namespace (tenant) token."""
    return validate_token(ns, "namespace")


def validate_id(value: object, what: str = "id") -> str:
    """Validate an aggregate or version id token."""
    return validate_token(value, what)


def validate_writable_namespace(ns: object) -> str:
    """Validate a namespace a user command writes to: a token, and not a reserved one."""
    name = validate_namespace(ns)
    if name in RESERVED_NAMESPACES:
        raise InvalidInput(f"namespace {name!r} is reserved for Mnemos itself", field="namespace",
                           value=name)
    return name
