"""Prometheus metrics of the auditor (its consumer's are in :mod:`libs.consumer.metrics`)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

__all__ = [
    "CHAIN_HEAD",
    "CHECKPOINTS_SIGNED",
    "INCIDENTS",
    "LAST_VERIFICATION_OK",
    "LAST_VERIFICATION_TIME",
    "VERIFICATIONS",
    "record_verification_result",
]

CHAIN_HEAD: Final = Gauge("mnemos_audit_chain_head_seq", "Stream sequence of the last link.")
CHECKPOINTS_SIGNED: Final = Counter(
    "mnemos_audit_checkpoints_signed", "Ed25519 checkpoints of the chain head signed.")
INCIDENTS: Final = Counter(
    "mnemos_audit_incidents", "Problems the writer noticed (holes, removed links), by kind.",
    ["kind"])
VERIFICATIONS: Final = Counter(
    "mnemos_audit_verifications", "Verification runs answered, by mode and result.",
    ["mode", "result"])
LAST_VERIFICATION_OK: Final = Gauge(
    "mnemos_audit_last_verification_ok",
    "Result of the newest recorded verification (audit_verifications): 1 passed, 0 found a "
    "break or a read-model difference, -1 none recorded yet.")
LAST_VERIFICATION_OK.set(-1)
LAST_VERIFICATION_TIME: Final = Gauge(
    "mnemos_audit_last_verification_timestamp_seconds",
    "Unix time the newest recorded verification finished (0: none yet).")


def record_verification_result(mode: str, ok: bool, finished_at: float) -> None:
    """Export one verification's outcome (counted, and as the latest result)."""
    VERIFICATIONS.labels(mode, "ok" if ok else "failed").inc()
    LAST_VERIFICATION_OK.set(1 if ok else 0)
    LAST_VERIFICATION_TIME.set(finished_at)
