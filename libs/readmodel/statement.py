"""One SQL statement of a projection (shared by the memory and the registry projections)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, LiteralString

__all__ = ["Statement"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement of a projection.

    When ``expect_rows`` is set, a different row count means the event contradicts the read
    model and ``error`` (formatted with the parameters) is raised as
    :class:`~libs.readmodel.projections.InvariantViolation`.
    """

    query: LiteralString
    params: Mapping[str, Any] = field(default_factory=dict)
    expect_rows: int | None = None
    error: str = ""
