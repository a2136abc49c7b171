"""The committed JSON Schema of the events is what libs/events generates, and real encoded
events validate against it (so a subscriber in another language can trust it)."""

from __future__ import annotations

import json

import jsonschema

from libs.events import encode_event
from libs.events.catalogue import CATALOGUE_PATH, event_catalogue, render_catalogue
from libs.events.model import event_types
from tests.support.events import History


def test_the_committed_catalogue_matches_the_contract() -> None:
    assert CATALOGUE_PATH.read_text() == render_catalogue(), (
        "libs/events/schema/events.json is stale: run python -m libs.events.catalogue")
    documented = {tag for tag in event_catalogue()["discriminator"]["mapping"]}
    assert documented == set(event_types())


def test_encoded_events_validate_and_bad_ones_do_not() -> None:
    schema = json.loads(CATALOGUE_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    make = History()
    created = make.created("The renewal date is 2027-03-01", tags=("billing",))
    memory_id = created.data.memory_id
    for event in (created, make.revised(memory_id, "2027-04-01"),
                  make.tagged(memory_id, added=("x",)), make.linked(memory_id, memory_id),
                  make.metadata_changed(memory_id, {"n": 1.5}, ()),
                  make.forgotten(memory_id, "obsolete")):
        validator.validate(json.loads(encode_event(event)))
    bad = json.loads(encode_event(created))
    bad["data"].pop("content")
    assert not validator.is_valid(bad)
    bad = {**json.loads(encode_event(created)), "type": "MemoryInvented"}
    assert not validator.is_valid(bad)
