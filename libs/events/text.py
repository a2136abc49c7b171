"""Rules for text that crosses the edge: storable by Postgres, and "empty" meaning invisible.

Postgres cannot store U+0000 in ``text`` or ``json`` values, and a lone surrogate is not valid
UTF-8 at all. Such text is refused at the edge (``invalid_input``, nothing appended) by
:func:`check_storable`, which walks a decoded command or query once. Events already in a stream
are never refused: the projector stores them through :func:`storable`, a deterministic mapping
that every reader of the read models (the gateway, the auditor's verification) applies the same
way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from libs.events.errors import InvalidInput

__all__ = [
    "REPLACEMENT",
    "check_storable",
    "is_blank",
    "storable",
    "storable_json",
    "unstorable_reason",
]

REPLACEMENT: Final = "\ufffd"
"""What :func:`storable` puts in place of a character Postgres cannot hold."""

_CANONICAL: Final = msgspec.json.Encoder(order="sorted")

_INVISIBLE_CATEGORIES: Final = frozenset(
    {"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})
"""Control, format (zero-width spaces, joiners, BOM), surrogate, unassigned,
separator and combining-mark characters: none of them is visible on its own."""


def unstorable_reason(text: str) -> str | None:
    """Why ``text`` cannot be stored by Postgres (``None`` when it can)."""
    if "\x00" in text:
        return "contains U+0000"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid UTF-8)"
    return None


def storable(text: str) -> str:
    """``text`` with U+0000 and lone surrogates replaced by U+FFFD (identity for valid text).

    Only for events already in a stream, written before the edge refused such text: projecting
    them must stay deterministic instead of dead-lettering.
    """
    if unstorable_reason(text) is None:
        return text
    return "".join(REPLACEMENT if char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF else char
                   for char in text)


def _storable_builtins(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): _storable_builtins(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable_builtins(item) for item in value]
    return value


def storable_json(value: object) -> str:
    """The canonical JSON text of ``value`` with every string passed through :func:`storable`.

    Canonical JSON escapes U+0000 as ``\\u0000``, which ``json`` columns keep but ``jsonb``
    columns and text extraction refuse; so a legacy value holding one is mapped like text.
    """
    text = _CANONICAL.encode(value).decode()
    if "\\u0000" not in text:
        return text
    return _CANONICAL.encode(_storable_builtins(msgspec.json.decode(text))).decode()


def is_blank(text: str) -> bool:
    """Whether ``text`` has no visible character (whitespace, zero-width and control only)."""
    return all(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in text)


def check_storable(value: object, path: str = "$") -> None:
    """Raise :class:`InvalidInput` naming the first text field (or key) of ``value`` that
    Postgres could not store. Walks structs, mappings and sequences once."""
    if isinstance(value, str):
        reason = unstorable_reason(value)
        if reason is not None:
            raise InvalidInput(f"{path} {reason}; text must be valid UTF-8 without U+0000",
                               field=path)
        return
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_storable(getattr(value, name), f"{path}.{name}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_storable(key, f"{path}.<key>")
            check_storable(item, f"{path}.{key}" if isinstance(key, str) else path)
        return
    if isinstance(value, list | tuple | set | frozenset):
        items: Any = value
        for index, item in enumerate(items):
            check_storable(item, f"{path}[{index}]")
