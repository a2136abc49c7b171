"""Signed checkpoints and proofs, checked the way an outsider would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from libs.events import EVENTS_STREAM, BreakKind
from libs.runtime.config import Config
from libs.runtime.nats_client import ensure_streams
from services.auditor.files import checkpoint_dir, read_public_key
from services.auditor.store import audit_schema
from tests.support.auditor import (
    audit_cli,
    db,
    publish_events,
    running_auditor,
    wait_for_head,
)
from tests.unit.test_chain_proof_offline import ProofRejected, check_proof


async def _link_all(config: Config, js) -> None:
    async with running_auditor(config):
        last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
        await wait_for_head(config, last)


async def test_prove_prints_a_proof_an_outsider_can_check(config: Config, nats_js,
                                                          tmp_path: Path) -> None:
    config = config.model_copy(update={"audit_checkpoint_events": 25})
    published = await publish_events(nats_js, 30)
    await _link_all(config, nats_js)
    published += await publish_events(nats_js, 30)
    await _link_all(config, nats_js)
    seq, event = published[9]
    trusted = read_public_key(config)
    assert trusted is not None

    done = audit_cli(config, "prove", event.id)
    assert done.returncode == 0, done.stderr
    proof = json.loads(done.stdout)
    assert proof["event"]["seq"] == seq and proof["event"]["decoded"]["id"] == event.id
    proven = check_proof(proof, trusted)
    assert proven["data"]["content"] == event.data.content
    assert proof["checkpoint"]["seq"] >= 60  # the latest checkpoint, past the second round

    out = tmp_path / "proof.json"
    done = audit_cli(config, "prove", event.id, "--nearest", "--out", str(out))
    assert done.returncode == 0, done.stderr
    nearest = json.loads(out.read_text())
    assert nearest["checkpoint"]["seq"] < proof["checkpoint"]["seq"]
    assert len(nearest["links"]) < len(proof["links"])
    check_proof(nearest, trusted)

    forged = json.loads(out.read_text())
    forged["links"][3]["event_hash"] = "00" * 32
    with pytest.raises(ProofRejected):
        check_proof(forged, trusted)

    unknown = audit_cli(config, "prove", "01900000-0000-7000-8000-000000000000")
    assert unknown.returncode == 2 and "not_found" in unknown.stderr


async def test_a_checkpoint_file_catches_a_recomputed_history(config: Config, nats_js,
                                                              tmp_path: Path) -> None:
    """An attacker replaces the stream and recomputes a consistent chain over it: verification
    without the shipped checkpoint finds nothing, with it the rewrite is named."""
    config = config.model_copy(update={"audit_checkpoint_events": 20})
    await publish_events(nats_js, 50)
    await _link_all(config, nats_js)
    shipped = tmp_path / "checkpoint.json"
    shutil.copy(checkpoint_dir(config) / "latest.json", shipped)
    signed_seq = json.loads(shipped.read_text())["seq"]

    await nats_js.delete_stream(EVENTS_STREAM)  # the forged world: other events, same length
    await ensure_streams(nats_js, config)
    await publish_events(nats_js, 60, ns="forged")
    with db(config) as conn:
        conn.execute(f"DROP SCHEMA {audit_schema(config.db_schema)} CASCADE")
    await _link_all(config, nats_js)

    done = audit_cli(config, "verify", "--full")
    assert done.returncode == 0, done.stderr  # self-consistent
    done = audit_cli(config, "verify", "--checkpoint", str(shipped))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["first_break"]["kind"] == BreakKind.CHECKPOINT_MISMATCH
    assert report["first_break"]["seq"] == signed_seq
    assert report["checkpoint_file"]["signature_valid"] is True
    assert report["checkpoint_file"]["matches"] is False

    latest = checkpoint_dir(config) / "latest.json"
    intact = audit_cli(config, "verify", "--checkpoint", str(latest))
    assert intact.returncode == 0, intact.stderr
    assert json.loads(intact.stdout)["checkpoint_file"]["matches"] is True
