"""The SDK's wire mapping is derived from the catalog, and its generated methods are current."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.events import OPERATIONS, InvalidInput, ListMemories, Remember
from libs.events.commands import Merge
from mnemos_sdk import AsyncMnemos
from mnemos_sdk._wire import ensure_command_id, http_call, nats_subject
from mnemos_sdk.codegen import TARGET, render


def test_the_generated_methods_match_the_catalog() -> None:
    assert TARGET.read_text() == render(), "run: python -m mnemos_sdk.codegen"
    for name in OPERATIONS:
        assert callable(getattr(AsyncMnemos, name)), name


def test_get_routes_carry_fields_in_the_query_and_path() -> None:
    request = ListMemories(tags=("a", "b"), kind="fact", since=datetime(2026, 1, 2, tzinfo=UTC))
    call = http_call(OPERATIONS["list"], "team-a", request)
    assert (call.method, call.path, call.body) == ("GET", "/v1/team-a/memories", None)
    assert call.params == (("tags", "a"), ("tags", "b"), ("kind", "fact"),
                           ("since", "2026-01-02T00:00:00Z"))
    version = http_call(OPERATIONS["version"], "team-a",
                        OPERATIONS["version"].request(memory_id="m" * 8, ref="main"))
    assert version.path == "/v1/team-a/memories/mmmmmmmm/versions/main" and not version.params


def test_commands_post_the_struct_and_fix_their_command_id_once() -> None:
    op = OPERATIONS["merge"]
    merge = ensure_command_id(op, Merge(memory_id="m1", into="main", from_branch="draft"))
    assert merge.command_id is not None  # type: ignore[attr-defined]
    assert ensure_command_id(op, merge) is merge
    call = http_call(op, "team-a", merge)
    assert call.method == "POST" and b'"from":"draft"' in (call.body or b"")
    assert nats_subject(op, "team-a") == "mnemos.cmd.team-a.merge"
    assert nats_subject(OPERATIONS["create_key"], None) == "mnemos.cmd.system.create_key"


@pytest.mark.parametrize("ns", ["Team", "a.b", "*", ">", "", "a" * 65])
def test_a_bad_namespace_is_refused_before_sending(ns: str) -> None:
    with pytest.raises(InvalidInput):
        nats_subject(OPERATIONS["remember"], ns)
    with pytest.raises(InvalidInput):
        nats_subject(OPERATIONS["remember"], None)
    assert Remember(content="x").command_id is None
