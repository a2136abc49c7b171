"""Pure audit-chain logic: links, extension, diagnosis of each kind of tampering, checkpoints."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import blake3
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.msg import Msg

from libs.consumer.deliveries import stream_seq_of
from libs.events import BreakKind, canonical_bytes, encode_event, event_hash
from services.auditor.chain import (
    GENESIS_HEAD,
    GENESIS_LINK,
    Head,
    StoredRow,
    diagnose,
    event_digest,
    event_id_of,
    extend,
    next_link,
)
from services.auditor.checkpoint import (
    Checkpoint,
    checkpoint_due,
    checkpoint_message,
    format_at,
    parse_at,
    sign_checkpoint,
    verify_checkpoint,
)
from services.auditor.readmodel import compare_event_row, compare_version_row
from tests.support.auditor import memory_created


def _messages(count: int, start: int = 1) -> list[tuple[int, bytes]]:
    return [(seq, encode_event(memory_created("ns", seq))) for seq in range(start, start + count)]


def test_genesis_and_link_follow_the_documented_formula() -> None:
    assert blake3.blake3(b"mnemos.audit-chain.genesis.v1").digest() == GENESIS_LINK
    raw = b'{"any":"bytes"}'
    expected = blake3.blake3(GENESIS_LINK + (1).to_bytes(8, "big")
                             + blake3.blake3(raw).digest()).digest()
    assert next_link(GENESIS_LINK, 1, event_digest(raw)) == expected
    assert event_digest(raw).hex() == event_hash(raw)


def test_the_link_binds_the_sequence_the_bytes_and_the_past() -> None:
    digest = event_digest(b"x")
    base = next_link(GENESIS_LINK, 5, digest)
    assert next_link(GENESIS_LINK, 6, digest) != base
    assert next_link(GENESIS_LINK, 5, event_digest(b"y")) != base
    assert next_link(bytes(32), 5, digest) != base


def test_extend_links_in_order_and_covers_undecodable_messages() -> None:
    messages = [*_messages(3), (4, b"\x00 not an event")]
    ext = extend(GENESIS_HEAD, messages)
    assert [row.seq for row in ext.rows] == [1, 2, 3, 4]
    assert ext.gap is None and ext.head.seq == 4
    assert ext.rows[0].prev_link == GENESIS_LINK
    for before, after in itertools.pairwise(ext.rows):
        assert after.prev_link == before.link
    assert ext.rows[3].event_id is None and ext.rows[0].event_id is not None
    assert ext.head.link == ext.rows[-1].link


def test_extend_skips_redeliveries_and_stops_at_a_gap() -> None:
    first = extend(GENESIS_HEAD, _messages(2))
    again = extend(first.head, [*_messages(2), *_messages(1, start=3), *_messages(1, start=5)])
    assert again.skipped == 2
    assert [row.seq for row in again.rows] == [3]
    assert again.gap == (4, 5)
    assert again.head.seq == 3


def test_extension_in_batches_equals_extension_at_once() -> None:
    messages = _messages(10)
    whole = extend(GENESIS_HEAD, messages)
    head: Head = GENESIS_HEAD
    for chunk in (messages[:3], messages[3:7], messages[7:]):
        head = extend(head, chunk).head
    assert head == whole.head


def _stored(prev: bytes, seq: int, raw: bytes) -> StoredRow:
    digest = event_digest(raw)
    return StoredRow(seq, event_id_of(raw), digest, next_link(prev, seq, digest))


def test_diagnose_accepts_an_intact_row() -> None:
    raw = _messages(1)[0][1]
    link, brk = diagnose(GENESIS_LINK, 1, raw, _stored(GENESIS_LINK, 1, raw))
    assert brk is None and link == _stored(GENESIS_LINK, 1, raw).link


def test_diagnose_names_each_kind_of_tampering() -> None:
    raw = _messages(1)[0][1]
    good = _stored(GENESIS_LINK, 1, raw)
    edited_link = StoredRow(1, good.event_id, good.event_hash, bytes(32))
    _, brk = diagnose(GENESIS_LINK, 1, raw, edited_link)
    assert brk is not None and brk.kind is BreakKind.STORED_LINK_EDITED
    assert brk.expected == good.link.hex() and brk.found == bytes(32).hex()

    edited_hash = StoredRow(1, good.event_id, bytes(32), good.link)
    _, brk = diagnose(GENESIS_LINK, 1, raw, edited_hash)
    assert brk is not None and brk.kind is BreakKind.STORED_HASH_EDITED

    altered = raw.replace(b"dark mode", b"dark MODE")
    _, brk = diagnose(GENESIS_LINK, 1, altered, good)
    assert brk is not None and brk.kind is BreakKind.EVENT_BYTES_CHANGED
    assert brk.expected == good.event_hash.hex() and brk.found == event_hash(altered)

    both = StoredRow(1, good.event_id, bytes(32), bytes(32))
    _, brk = diagnose(GENESIS_LINK, 1, raw, both)
    assert brk is not None and brk.kind is BreakKind.CHAIN_ROW_EDITED


def test_checkpoint_signature_covers_seq_link_and_time() -> None:
    key = Ed25519PrivateKey.generate()
    at = format_at(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert at == "2026-01-02T03:04:05.000006Z" and parse_at(at).microsecond == 6
    cp = sign_checkpoint(key, 42, GENESIS_LINK, at)
    assert verify_checkpoint(cp)
    assert checkpoint_message(42, GENESIS_LINK.hex(), at) == (
        f"mnemos-audit-checkpoint/v1\nseq=42\nlink={GENESIS_LINK.hex()}\nat={at}\n".encode())
    for forged in (msgspec.structs.replace(cp, seq=43),
                   msgspec.structs.replace(cp, link=bytes(32).hex()),
                   msgspec.structs.replace(cp, at=format_at(datetime.now(UTC)))):
        assert not verify_checkpoint(forged)
    other = Ed25519PrivateKey.generate()
    assert not verify_checkpoint(cp, trusted_key_hex=sign_checkpoint(other, 1, GENESIS_LINK,
                                                                      at).public_key)
    assert not verify_checkpoint(Checkpoint(seq=1, link="zz", at=at, public_key="00",
                                            signature="00"))


@pytest.mark.parametrize(
    ("head", "last", "seconds", "new", "due"),
    [
        (0, 0, 999.0, 0, False),        # nothing linked yet
        (100, 0, 0.0, 100, True),       # every 100 events
        (99, 0, 0.0, 99, False),
        (5, 0, 61.0, 5, True),          # time elapsed and real events arrived
        (1, 0, 61.0, 0, False),         # only our own announcement: no checkpoint loop
        (5, 5, 999.0, 3, False),        # head already signed
    ],
)
def test_checkpoint_cadence(head: int, last: int, seconds: float, new: int, due: bool) -> None:
    assert checkpoint_due(head, last, seconds, new, 100, 60.0) is due


def test_stream_seq_is_read_from_both_ack_subject_layouts() -> None:
    assert stream_seq_of("$JS.ACK.MNEMOS_EVENTS.auditor.1.4711.12.1700000000000000000.3") == 4711
    v2 = "$JS.ACK.dom.acc.MNEMOS_EVENTS.auditor.1.4711.12.1700000000000000000.3.tok"
    assert stream_seq_of(v2) == 4711
    assert Msg.Ack.StreamSeq == 7


def _projected(event_raw: bytes) -> tuple[dict[str, object], dict[str, object]]:
    """Rows as the projector writes them (canonical JSON, read back)."""
    from libs.events import decode_event

    event = decode_event(event_raw)
    data = msgspec.json.decode(canonical_bytes(event.data))
    events_row = {"event_id": event.id, "ns": event.ns, "memory_id": event.aggregate_id,
                  "type": "MemoryCreated", "schema": event.schema, "command_id": event.command_id,
                  "correlation_id": event.correlation_id, "at": event.at,
                  "actor": msgspec.json.decode(canonical_bytes(event.actor)), "data": data}
    version_row = {"event_id": event.id, "ns": event.ns, "memory_id": event.aggregate_id,
                   "version_id": data["version_id"], "content": data["content"],
                   "content_hash": data["content_hash"]}
    return events_row, version_row


def test_read_model_rows_are_compared_with_their_event() -> None:
    from libs.events import decode_event

    raw = _messages(1)[0][1]
    event = decode_event(raw)
    events_row, version_row = _projected(raw)
    assert compare_event_row(events_row, event, 1) is None
    assert compare_version_row(version_row, event, 1) is None
    tampered = {**events_row, "data": {**events_row["data"], "content": "rewritten"}}  # type: ignore[dict-item]
    issue = compare_event_row(tampered, event, 1)
    assert issue is not None and issue.field == "data" and issue.table == "memory_events"
    issue = compare_version_row({**version_row, "content": "rewritten"}, event, 1)
    assert issue is not None and issue.field == "content"
