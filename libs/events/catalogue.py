"""The event catalogue as JSON Schema (2020-12), generated from the event union of this
package, for subscribers written in other languages.

The committed copy is ``libs/events/schema/events.json`` (the gateway serves it at
``/schema/events.json``); ``tests/unit/test_event_catalogue.py`` fails while it differs from
what :func:`event_catalogue` generates. After adding or changing an event, regenerate it:
``python -m libs.events.catalogue``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from libs.events.model import Event, event_types
from libs.events.subjects import EVENT_PREFIX

__all__ = ["CATALOGUE_PATH", "event_catalogue", "render_catalogue"]

CATALOGUE_PATH: Final = Path(__file__).with_name("schema") / "events.json"
"""Where the committed catalogue lives."""


def event_catalogue() -> dict[str, Any]:
    """The JSON Schema of every event Mnemos appends: one tagged union on ``type``, each
    member with its payload's schema version (``x-mnemos-schema``)."""
    schema: dict[str, Any] = msgspec.json.schema(Event)
    defs: dict[str, Any] = schema["$defs"]
    for tag, cls in event_types().items():
        found = next((d for name, d in defs.items() if name == cls.__name__), None)
        if found is not None:
            found["x-mnemos-schema"] = cls.SCHEMA
            found.setdefault("description", (cls.__doc__ or tag).strip().splitlines()[0])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mnemos.invalid/schema/events.json",
        "title": "Mnemos events",
        "description": (
            f"Every event on the MNEMOS_EVENTS stream, subject {EVENT_PREFIX}.<ns>.<aggregate>."
            "<aggregate_id>, encoded as canonical JSON (keys sorted, compact, UTC times). "
            "Older payload schemas are upcast on read by libs/events/upcasting.py; a consumer "
            "should skip types it does not know."),
        **schema,
    }


def render_catalogue() -> str:
    """The catalogue as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(event_catalogue(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    """Write the committed catalogue (``--check``: exit 1 when it is stale)."""
    text = render_catalogue()
    if "--check" in sys.argv[1:]:
        sys.exit(0 if CATALOGUE_PATH.exists() and CATALOGUE_PATH.read_text() == text else 1)
    CATALOGUE_PATH.parent.mkdir(exist_ok=True)
    CATALOGUE_PATH.write_text(text)


if __name__ == "__main__":
    main()
