"""Receipts: content-addressed and stable, idempotent, exact through canonical JSON; edges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from libs.events.codec import canonical_bytes
from libs.events.compression import MemoryCompressedData
from libs.events.errors import InvalidInput
from services.compressor.compressor import MAX_INPUT_CHARS, CompressionSettings, Compressor, Subject
from services.compressor.receipt import hash_text, receipt_id

FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
HAND = {row["id"]: row["text"] for row in map(
    json.loads, (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines())}
SUBJECT = Subject(memory_id="0190a0d2-7c4e-7b2a-9f3e-1c2d3e4f5a6b", version_id="a" * 32)
ID_ARGS = {
    "memory_id": SUBJECT.memory_id, "version_id": "a" * 32, "input_hash": "b" * 64,
    "engines": [("extractive", "1"), ("facts", "1")],
    "settings": {"target_ratio": 0.45, "quality_floor": 60.0},
    "trigger": "on_write", "tokenizer": "cl100k_base/tiktoken-0.14.0",
}
DECODER = msgspec.json.Decoder(MemoryCompressedData)


def test_receipt_id_is_stable() -> None:
    # A golden value: changing it breaks idempotency of every stored receipt.
    assert receipt_id(**ID_ARGS) == "91c9979197b5016acfb3b13bb5115770"  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [
    ("version_id", "c" * 32), ("memory_id", "other"), ("input_hash", "d" * 64),
    ("engines", [("extractive", "2"), ("facts", "1")]), ("engines", [("extractive", "1")]),
    ("settings", {"target_ratio": 0.5, "quality_floor": 60.0}), ("trigger", "context"),
    ("tokenizer", "o200k_base/x"),
])
def test_receipt_id_changes_with_what_determines_it(field: str, value: object) -> None:
    assert receipt_id(**{**ID_ARGS, field: value}) != receipt_id(**ID_ARGS)  # type: ignore[arg-type]


def test_receipt_id_ignores_engine_order() -> None:
    swapped = {**ID_ARGS, "engines": [("facts", "1"), ("extractive", "1")]}
    assert receipt_id(**swapped) == receipt_id(**ID_ARGS)  # type: ignore[arg-type]


def test_non_finite_settings_are_rejected() -> None:
    with pytest.raises(InvalidInput):
        receipt_id(**{**ID_ARGS, "settings": {"x": float("nan")}})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        CompressionSettings(target_ratio=float("inf"))
    with pytest.raises(InvalidInput):
        CompressionSettings(target_ratio=0.0)


def test_same_version_engines_and_settings_give_the_same_receipt() -> None:
    first = Compressor().offline(SUBJECT, HAND["hand-incident-report"]).data
    again = Compressor().offline(SUBJECT, HAND["hand-incident-report"]).data
    assert first is not None and again is not None
    assert canonical_bytes(first) == canonical_bytes(again)
    other = Compressor(settings=CompressionSettings(target_ratio=0.3)).offline(
        SUBJECT, HAND["hand-incident-report"]).data
    assert other is not None and other.receipt.receipt_id != first.receipt.receipt_id


@pytest.mark.parametrize("key", sorted(HAND))
def test_receipt_round_trips_exactly_through_canonical_json(key: str) -> None:
    data = Compressor().offline(SUBJECT, HAND[key]).data
    assert data is not None
    raw = canonical_bytes(data)
    decoded = DECODER.decode(raw)
    assert decoded == data
    assert canonical_bytes(decoded) == raw
    receipt = decoded.receipt
    assert receipt.input_hash == hash_text(HAND[key])
    assert receipt.output_hash == hash_text(decoded.content)
    assert receipt.ratio == round(receipt.compressed_tokens / receipt.original_tokens, 6)
    for span in receipt.protected:
        assert HAND[key][span.start:span.end] == span.text
    for note in (*receipt.removed, *receipt.preserved):
        assert 0 <= note.start < note.end <= len(HAND[key]) and note.reason


def test_receipt_holds_every_design_field() -> None:
    data = Compressor().offline(SUBJECT, HAND["hand-meeting-notes"]).data
    assert data is not None
    r = data.receipt
    assert (r.memory_id, r.version_id, r.trigger) == (SUBJECT.memory_id, "a" * 32, "on_write")
    assert r.engine == "extractive" and r.engine_version and r.tokenizer.startswith("cl100k_base")
    assert 0 < r.compressed_tokens < r.original_tokens and 0 < r.ratio < 1
    assert r.removed and r.preserved and r.protected and r.output_sources
    assert {c.name for c in r.quality} == {"protected_recall", "coverage", "precision",
                                           "structure", "similarity"}
    assert r.quality_formula.startswith("100 * sum(w*v)")
    assert r.safe_for and r.risk_factors and r.contest
    assert all(p.survived for p in r.protected)


def test_short_note_is_passed_through_with_ratio_one() -> None:
    data = Compressor().offline(SUBJECT, HAND["hand-short-note"]).data
    assert data is not None
    assert data.content == HAND["hand-short-note"] and data.receipt.ratio == 1.0
    assert any("too short to gain" in note for note in data.receipt.notes)


@pytest.mark.parametrize("text", ["", "   \n\t ", "☕", "ok"])
def test_empty_and_tiny_inputs(text: str) -> None:
    data = Compressor().offline(SUBJECT, text).data
    assert data is not None and data.content == text and data.receipt.ratio == 1.0


@pytest.mark.parametrize("text", ["nul \x00 inside", "lone \ud83d surrogate"])
def test_invalid_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidInput):
        Compressor().offline(SUBJECT, text)


def test_too_long_input_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        Compressor().offline(SUBJECT, "a" * (MAX_INPUT_CHARS + 1))


def test_huge_unicode_input_keeps_every_protected_span() -> None:
    paragraph = ("Zoë paid €1,250.50 on 2026-03-01 for Ünïcode café ☕ 🧪 tests; the team did "
                 "not approve 1e308 or -0.0001% of it. Otherwise a quiet, ordinary, long day "
                 "with nothing worth keeping in particular at all, really.\n\n")
    text = paragraph * 400  # ~100 KB
    data = Compressor().offline(SUBJECT, text).data
    assert data is not None
    assert all(p.survived for p in data.receipt.protected)
    assert data.receipt.compressed_tokens < data.receipt.original_tokens
    assert DECODER.decode(canonical_bytes(data)) == data


def test_wire_decoding_is_strict() -> None:
    data = Compressor().offline(SUBJECT, HAND["hand-standup"]).data
    assert data is not None
    wire = msgspec.json.decode(canonical_bytes(data))
    for broken in (
        {**wire, "surprise": 1},
        {**wire, "receipt": {**wire["receipt"], "ratio": -0.5}},
        {**wire, "receipt": {**wire["receipt"], "ratio": None}},  # what NaN would encode to
        {**wire, "receipt": {**wire["receipt"], "trigger": "sometime"}},
        {**wire, "receipt": {**wire["receipt"], "receipt_id": "XYZ"}},
    ):
        with pytest.raises(msgspec.ValidationError):
            DECODER.decode(msgspec.json.encode(broken))


def test_receipts_are_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from libs.events.codec import canonical_bytes\n"
        "from services.compressor.compressor import Compressor, Subject\n"
        "texts = [json.loads(l)['text'] for l in open(sys.argv[1], encoding='utf-8')]\n"
        "s = Subject(memory_id='m', version_id='a' * 32)\n"
        "c = Compressor()\n"
        "sys.stdout.buffer.write(b'\\n'.join(canonical_bytes(c.offline(s, t).data) "
        "for t in texts))\n"
    )
    outputs = []
    for seed in ("1", "4242"):
        done = subprocess.run(
            [sys.executable, "-c", code, str(FIXTURES / "handmade.jsonl")],
            env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, check=True,
            cwd=Path(__file__).parents[2], timeout=120)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == len(HAND) - 1
