"""The compressor service's pure parts: receipt ids known before compressing, idempotent
events, the LLM round equal to a full contest, the projection and fold of MemoryCompressed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from libs.events import (
    PURPOSE_NAMES,
    Actor,
    MemoryCompressed,
    MemoryCreated,
    MemoryCreatedData,
    content_hash,
    decode_event,
    derive_event_id,
    encode_event,
    validate_command_id,
    version_id,
)
from libs.events.compression import compression_command_id
from libs.readmodel.expected import fold_memory
from libs.readmodel.projections import InvariantViolation, project
from services.compressor.compressor import Compressor, Subject
from services.compressor.engines.llm import ChatMessage, ChatReply, LlmEngine
from services.compressor.purposes import PURPOSES
from services.compressor.service import compression_event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
TEXT = {json.loads(line)["id"]: json.loads(line)["text"] for line in
        (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines()}
NOTES = TEXT["hand-meeting-notes"]
MEMORY = "0190a0d2-7c4e-7b2a-9f3e-000000000001"
COMMAND = "0190a0d2-7c4e-7b2a-9f3e-000000000002"
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class EchoChat:
    """Replies with the first sentence of the text, verbatim."""

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                       timeout_s: float) -> ChatReply:
        del max_tokens, timeout_s
        first = NOTES.split("\n")[0]
        return ChatReply(text=f"<compressed>{first}</compressed>", model="echo",
                         input_tokens=1, output_tokens=1)


def source(text: str = NOTES) -> MemoryCreated:
    digest = content_hash(text)
    return MemoryCreated(
        id=derive_event_id("notes", COMMAND), schema=MemoryCreated.SCHEMA, ns="notes",
        aggregate="memory", aggregate_id=MEMORY, actor=Actor(principal="tests"),
        command_id=COMMAND, correlation_id=COMMAND, at=AT,
        data=MemoryCreatedData(memory_id=MEMORY, version_id=version_id(MEMORY, digest, {}, []),
                               kind="note", content=text, content_hash=digest,
                               occurred_at=AT))


def subject() -> Subject:
    return Subject(memory_id=MEMORY, version_id=source().data.version_id)


def test_the_receipt_id_is_known_before_any_engine_runs() -> None:
    compressor = Compressor()
    data = compressor.offline(subject(), NOTES).data
    assert data is not None
    assert compressor.planned_receipt_id(subject(), NOTES, with_llm=False) == (
        data.receipt.receipt_id)
    with_llm = Compressor(llm_engines=(LlmEngine(EchoChat(), "echo", 2.0),))
    assert with_llm.planned_receipt_id(subject(), NOTES, with_llm=False) == (
        data.receipt.receipt_id)
    assert with_llm.planned_receipt_id(subject(), NOTES, with_llm=True) != (
        data.receipt.receipt_id)


async def test_the_llm_round_equals_the_full_contest() -> None:
    compressor = Compressor(llm_engines=(LlmEngine(EchoChat(), "echo", 2.0),))
    offline = compressor.offline(subject(), NOTES)
    full = await compressor.llm_round(subject(), NOTES, offline)
    once = await compressor.run(subject(), NOTES)
    assert full.data == once.data and full.data is not None
    assert full.data.receipt.receipt_id == compressor.planned_receipt_id(
        subject(), NOTES, with_llm=True)
    assert [c.engine for c in full.data.receipt.contest] == ["extractive", "facts", "llm"]


def test_one_compression_is_one_event_id() -> None:
    data = Compressor().offline(subject(), NOTES).data
    assert data is not None
    first = compression_event(source(), data, AT)
    again = compression_event(source(), data, datetime.now(UTC))
    assert (first.id, first.command_id) == (again.id, again.command_id)
    assert validate_command_id(first.command_id) == first.command_id
    assert first.command_id == compression_command_id(COMMAND, data.receipt.receipt_id)
    other = msgspec.structs.replace(
        data, receipt=msgspec.structs.replace(data.receipt, receipt_id="0" * 32))
    assert compression_event(source(), other, AT).id != first.id
    assert decode_event(encode_event(first)) == first
    assert first.actor.principal == "mnemos-compressor"
    assert first.correlation_id == source().correlation_id


def test_the_wire_purposes_are_the_rules_purposes() -> None:
    assert tuple(PURPOSES) == PURPOSE_NAMES


def test_projection_and_fold_of_a_compression() -> None:
    created = source()
    data = Compressor().offline(subject(), NOTES).data
    assert data is not None
    event = compression_event(created, data, AT)
    statements = project(event, 2, None)
    insert = next(s for s in statements if "memory_compressions" in s.query)
    assert insert.params["receipt_id"] == data.receipt.receipt_id
    assert insert.params["safe_for"] == sorted(v.purpose for v in data.receipt.safe_for)
    expected = fold_memory([(created, 1), (event, 2), (event, 3)])
    assert expected.row["revision"] == 3  # every event on the subject moves it
    assert expected.row["updated_at"] == created.at  # ... but changes nothing served
    assert list(expected.compressions) == [data.receipt.receipt_id]
    assert expected.compressions[data.receipt.receipt_id]["seq"] == 2  # the first is the row


@pytest.mark.parametrize("change", ["memory", "content"])
def test_a_compression_that_contradicts_itself_is_an_invariant_violation(change: str) -> None:
    data = Compressor().offline(subject(), NOTES).data
    assert data is not None
    if change == "memory":
        data = msgspec.structs.replace(
            data, receipt=msgspec.structs.replace(data.receipt, memory_id="someone-else"))
    else:
        data = msgspec.structs.replace(data, content=data.content + " (edited)")
    with pytest.raises(InvariantViolation):
        project(compression_event(source(), data, AT), 2, None)
    assert isinstance(compression_event(source(), data, AT), MemoryCompressed)


def test_context_prunes_only_where_it_can_succeed_and_a_bounded_number_of_times() -> None:
    from services.compressor.assembly import MemoryCandidate
    from services.compressor.operations import MAX_PRUNES, bounded_pruner
    from services.compressor.tokenizer import default_tokenizer

    tokens = default_tokenizer()
    calls: list[int] = []

    def prune(candidate: MemoryCandidate, room: int) -> None:
        calls.append(room)

    bounded = bounded_pruner(prune, tokens)
    candidate = MemoryCandidate(memory_id=MEMORY, version_id="0" * 32, original=NOTES)
    size = tokens.count(NOTES)
    assert bounded(candidate, int(size * 0.2)) is None and calls == []  # hopeless: not tried
    for _ in range(MAX_PRUNES + 2):
        bounded(candidate, int(size * 0.8))
    assert len(calls) == MAX_PRUNES
