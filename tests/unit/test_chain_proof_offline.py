"""The offline proof check of services/auditor/PROOF.md, written as a third party would.

Deliberately imports nothing from ``libs`` or ``services``: only blake3, cryptography and the
standard library. ``check_proof`` is also run on real proofs printed by ``mnemos audit prove``
(tests/integration/test_auditor_proof.py).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import blake3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = blake3.blake3(b"mnemos.audit-chain.genesis.v1").digest()


class ProofRejected(Exception):
    """The proof does not establish what it claims."""


def _require(condition: bool, why: str) -> None:
    if not condition:
        raise ProofRejected(why)


def check_proof(proof: dict[str, Any], trusted_public_key_hex: str) -> dict[str, Any]:
    """Run the five steps of PROOF.md; return the proven event (parsed from its raw bytes)."""
    event, checkpoint, links = proof["event"], proof["checkpoint"], proof["links"]
    raw = base64.b64decode(event["raw_b64"], validate=True)
    _require(blake3.blake3(raw).hexdigest() == event["event_hash"], "event bytes != event_hash")
    _require(bool(links) and links[0]["seq"] == event["seq"]
             and links[0]["event_hash"] == event["event_hash"], "links do not start at the event")
    link = bytes.fromhex(proof["prev_link"])
    for offset, entry in enumerate(links):
        _require(entry["seq"] == event["seq"] + offset, f"sequence gap at {entry['seq']}")
        link = blake3.blake3(link + entry["seq"].to_bytes(8, "big")
                             + bytes.fromhex(entry["event_hash"])).digest()
        _require(link.hex() == entry["link"], f"link mismatch at seq {entry['seq']}")
    _require(links[-1]["seq"] == checkpoint["seq"], "links do not end at the checkpoint")
    _require(link.hex() == checkpoint["link"], "recomputed head != signed checkpoint link")
    _require(checkpoint["public_key"] == trusted_public_key_hex, "signed by an untrusted key")
    message = (f"mnemos-audit-checkpoint/v1\nseq={checkpoint['seq']}\n"
               f"link={checkpoint['link']}\nat={checkpoint['at']}\n").encode()
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(trusted_public_key_hex)).verify(
            bytes.fromhex(checkpoint["signature"]), message)
    except InvalidSignature:
        raise ProofRejected("checkpoint signature does not verify") from None
    proven: dict[str, Any] = json.loads(raw)
    return proven


def _hand_made_proof(key: Ed25519PrivateKey, target: int = 3, head: int = 6) -> dict[str, Any]:
    """A chain of ``head`` events built from the spec alone, proving event ``target``."""
    raws = [json.dumps({"id": f"e{i}", "ns": "n", "data": {"i": i}}).encode()
            for i in range(1, head + 1)]
    link, links, prev = GENESIS, [], GENESIS
    for seq, raw in enumerate(raws, start=1):
        digest = blake3.blake3(raw).digest()
        if seq == target:
            prev = link
        link = blake3.blake3(link + seq.to_bytes(8, "big") + digest).digest()
        if seq >= target:
            links.append({"seq": seq, "event_hash": digest.hex(), "link": link.hex()})
    at = "2026-01-01T00:00:00.000000Z"
    message = f"mnemos-audit-checkpoint/v1\nseq={head}\nlink={link.hex()}\nat={at}\n".encode()
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw).hex()
    return {
        "format": "mnemos-audit-proof/v1",
        "event": {"seq": target, "event_hash": links[0]["event_hash"],
                  "raw_b64": base64.b64encode(raws[target - 1]).decode()},
        "prev_link": prev.hex(),
        "checkpoint": {"seq": head, "link": link.hex(), "at": at, "public_key": public,
                       "signature": key.sign(message).hex()},
        "links": links,
    }


def test_a_valid_proof_is_accepted() -> None:
    key = Ed25519PrivateKey.generate()
    proof = _hand_made_proof(key)
    assert check_proof(proof, proof["checkpoint"]["public_key"])["data"] == {"i": 3}


def _edits() -> list[tuple[str, Any]]:
    def event_bytes(p: dict[str, Any]) -> None:
        p["event"]["raw_b64"] = base64.b64encode(b'{"id":"e3","data":{"i":4}}').decode()

    def event_hash(p: dict[str, Any]) -> None:
        p["event"]["raw_b64"] = base64.b64encode(b'{"forged":true}').decode()
        p["event"]["event_hash"] = blake3.blake3(b'{"forged":true}').hexdigest()

    def later_hash(p: dict[str, Any]) -> None:
        p["links"][2]["event_hash"] = "00" * 32

    def dropped_link(p: dict[str, Any]) -> None:
        del p["links"][1]

    def position(p: dict[str, Any]) -> None:
        p["event"]["seq"] += 1
        for entry in p["links"]:
            entry["seq"] += 1

    def checkpoint_link(p: dict[str, Any]) -> None:
        p["checkpoint"]["link"] = "11" * 32

    def checkpoint_time(p: dict[str, Any]) -> None:
        p["checkpoint"]["at"] = "2030-01-01T00:00:00.000000Z"

    return [(f.__name__, f) for f in (event_bytes, event_hash, later_hash, dropped_link,
                                        position, checkpoint_link, checkpoint_time)]


@pytest.mark.parametrize(("name", "edit"), _edits())
def test_any_edit_is_rejected(name: str, edit: Any) -> None:
    key = Ed25519PrivateKey.generate()
    proof = _hand_made_proof(key)
    forged = copy.deepcopy(proof)
    edit(forged)
    with pytest.raises(ProofRejected):
        check_proof(forged, proof["checkpoint"]["public_key"])


def test_a_proof_signed_by_another_key_is_rejected() -> None:
    proof = _hand_made_proof(Ed25519PrivateKey.generate())
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    with pytest.raises(ProofRejected):
        check_proof(proof, other)
