"""Proof that one event is in the chain under a signed checkpoint (format in PROOF.md).

A proof carries the event's exact stream bytes, the link before it, the event hash of every
later sequence up to a signed checkpoint, and that checkpoint. Recomputing the links from the
event to the checkpoint and checking the Ed25519 signature needs only blake3 and Ed25519: no
Mnemos code, no access to the system. Links are streamed out of a server-side cursor, so a
proof up to a far checkpoint is written in bounded memory.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final, TextIO

import msgspec
from nats.aio.client import Client

from libs.consumer.stream import connect_tool, get_message
from libs.events import NotFound, Unavailable
from libs.runtime.config import Config
from libs.runtime.nats_client import nats_credentials
from services.auditor.chain import GENESIS_LINK, ChainMismatch, event_digest
from services.auditor.store import ChainStore, CheckpointRecord, Conn, connect, iter_rows

__all__ = ["PROOF_FORMAT", "write_proof"]

PROOF_FORMAT: Final = "mnemos-audit-proof/v1"


def _decoded(raw: bytes) -> Any:
    """The event as JSON for people to read (the check uses ``raw_b64``, never this)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


async def _locate(store: ChainStore, nc: Client, event_id: str, latest: bool
                  ) -> tuple[int, bytes, str, CheckpointRecord, bytes]:
    """``(seq, raw, subject, checkpoint, prev_link)`` after checking they agree."""
    seq = await store.seq_of_event(event_id)
    if seq is None:
        raise NotFound(f"event {event_id} is not on the audit chain (yet)", event_id=event_id)
    record = await store.checkpoint_covering(seq, latest)
    if record is None:
        raise Unavailable(f"no signed checkpoint covers seq {seq} yet; one is signed every "
                          "audit_checkpoint_events events or audit_checkpoint_interval_s",
                          seq=seq)
    message = await get_message(nc.jetstream(), seq)
    if message is None:
        raise ChainMismatch(f"the stream cannot serve seq {seq}; run `mnemos audit verify`",
                            seq=seq)
    row, prev, anchor = (await store.row(seq), await store.row(seq - 1),
                         await store.row(record.checkpoint.seq))
    if row is None or prev is None or anchor is None:
        raise ChainMismatch("chain rows are missing; run `mnemos audit verify`", seq=seq)
    if row.event_hash != event_digest(message.data) or anchor.link.hex() != record.checkpoint.link:
        raise ChainMismatch(f"the stored chain and the stream or checkpoint disagree at seq {seq}; "
                       "run `mnemos audit verify`", seq=seq)
    return seq, message.data, message.subject, record, prev.link


async def build_proof(conn: Conn, nc: Client, event_id: str, out: TextIO,
                      latest: bool = True) -> int:
    """Write the proof of ``event_id`` as JSON to ``out``; return the number of links.

    ``latest``: prove up to the newest checkpoint (the strongest statement); otherwise up to
    the first checkpoint at or after the event (the shortest proof).
    """
    store = ChainStore(conn)
    seq, raw, subject, record, prev = await _locate(store, nc, event_id, latest)
    head = {
        "format": PROOF_FORMAT,
        "genesis_link": GENESIS_LINK.hex(),
        "event": {"seq": seq, "event_id": event_id, "subject": subject,
                  "event_hash": event_digest(raw).hex(),
                  "raw_b64": base64.b64encode(raw).decode(), "decoded": _decoded(raw)},
        "prev_link": prev.hex(),
        "checkpoint": msgspec.to_builtins(record.checkpoint),
    }
    text = json.dumps(head, indent=2)
    out.write(text[: text.rfind("}")].rstrip() + ',\n  "links": [')
    count = 0
    async with conn.transaction():
        async for row in iter_rows(conn, seq, record.checkpoint.seq, name="audit_proof"):
            entry = {"seq": row.seq, "event_hash": row.event_hash.hex(), "link": row.link.hex()}
            out.write(("\n    " if count == 0 else ",\n    ") + json.dumps(entry))
            count += 1
    out.write("\n  ]\n}\n")
    return count


async def write_proof(config: Config, event_id: str, out: TextIO, latest: bool = True) -> int:
    """Connect to ``config``'s system and write the proof of ``event_id`` to ``out``."""
    if config.database_url is None or config.nats_url is None:
        raise Unavailable("proofs need MNEMOS_DATABASE_URL and MNEMOS_NATS_URL")
    nc = await connect_tool(config.nats_url, "audit-prove", nats_credentials(config))
    try:
        conn = await connect(config.database_url, config.db_schema)
        try:
            return await build_proof(conn, nc, event_id, out, latest)
        finally:
            await conn.close()
    finally:
        await nc.close()
