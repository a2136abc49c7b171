"""The auditor: a blake3 hash chain over every event in the stream, verification, signed
checkpoints and offline proofs (DESIGN.md section 5; proof format in PROOF.md)."""
