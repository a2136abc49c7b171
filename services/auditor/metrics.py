"""Prometheus metrics of the auditor (its consumer's are in :mod:`libs.consumer.metrics`)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

__all__ = ["CHAIN_HEAD", "CHECKPOINTS_SIGNED", "INCIDENTS", "VERIFICATIONS"]

CHAIN_HEAD: Final = Gauge("mnemos_audit_chain_head_seq", "Stream sequence of the last link.")
CHECKPOINTS_SIGNED: Final = Counter(
    "mnemos_audit_checkpoints_signed", "Ed25519 checkpoints of the chain head signed.")
INCIDENTS: Final = Counter(
    "mnemos_audit_incidents", "Problems the writer noticed (holes, removed links), by kind.",
    ["kind"])
VERIFICATIONS: Final = Counter(
    "mnemos_audit_verifications", "Verification runs answered, by mode and result.",
    ["mode", "result"])
