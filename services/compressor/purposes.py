"""Per-purpose safety rules over the measurements: what a compressed form may be used for.

Each purpose is a list of requirements, each with its own reason when it fails; a purpose is
safe when every requirement holds. There is no blended threshold: a perfect score with one lost
figure is still not safe for financial use. All purposes require that the output invents no
number, name or identifier (the precision gate).

============== =============================================================================
purpose        requirements
============== =============================================================================
factual_recall every protected span kept; coverage >= 0.6; every output line supported
financial      every number, amount, percentage, date, time, duration and negation kept;
               coverage >= 0.4
legal          every number, amount, percentage, date, duration, negation and ``key: value``
               line kept; coverage >= 0.5
compliance     every protected span kept; coverage >= 0.5
code           every code block, inline code, identifier, path, version, hash, uuid and url
               kept; code structure kept
summary        coverage >= 0.4; similarity >= 0.75 when measured
brainstorming  similarity >= 0.6 when measured, else coverage >= 0.3 (lost spans tolerated)
============== =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from libs.events.compression import PurposeVerdict
from services.compressor.quality import Measurement

__all__ = ["PURPOSES", "Verdicts", "judge", "risk_factors"]

_FIGURES: Final = frozenset({"number", "amount", "percentage", "date", "time", "duration"})
_LEGAL: Final = frozenset({"number", "amount", "percentage", "date", "duration", "negation",
                           "key_value"})
_CODE: Final = frozenset({"code_block", "inline_code", "identifier", "path", "version", "hash",
                          "uuid", "url"})

Check = Callable[[Measurement], str | None]
"""A requirement: None when it holds, else the reason it fails."""


def _kinds_kept(kinds: frozenset[str] | None, label: str) -> Check:
    def check(m: Measurement) -> str | None:
        lost = [s for s in m.lost if kinds is None or s.kind in kinds]
        if not lost:
            return None
        shown = ", ".join(f"{s.kind} {s.text[:40]!r}" for s in lost[:5])
        more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        return f"lost {len(lost)} {label} span(s): {shown}{more}"
    return check


def _at_least(component: str, bound: float, *, required: bool = True) -> Check:
    def check(m: Measurement) -> str | None:
        value = m.value(component)
        if value is None:
            return f"{component} not measured" if required else None
        return None if value >= bound else f"{component} {value:.3f} < {bound:g}"
    return check


def _no_invention(m: Measurement) -> str | None:
    if not m.unsupported:
        return None
    return "output holds what the input does not: " + ", ".join(repr(u) for u in m.unsupported[:5])


def _similar_or_covered(m: Measurement) -> str | None:
    if m.value("similarity") is not None:
        return _at_least("similarity", 0.6)(m)
    return _at_least("coverage", 0.3)(m)


def _code_structure(m: Measurement) -> str | None:
    return "code blocks lost from the structure" if "code" in m.lost_structure else None


PURPOSES: Final[dict[str, tuple[Check, ...]]] = {
    "factual_recall": (_no_invention, _kinds_kept(None, "protected"), _at_least("coverage", 0.6),
                       _at_least("precision", 1.0)),
    "financial": (_no_invention, _kinds_kept(_FIGURES | {"negation"}, "figure or negation"),
                  _at_least("coverage", 0.4)),
    "legal": (_no_invention, _kinds_kept(_LEGAL, "figure, negation or clause"),
              _at_least("coverage", 0.5)),
    "compliance": (_no_invention, _kinds_kept(None, "protected"), _at_least("coverage", 0.5)),
    "code": (_no_invention, _kinds_kept(_CODE, "code or identifier"), _code_structure),
    "summary": (_no_invention, _at_least("coverage", 0.4),
                _at_least("similarity", 0.75, required=False)),
    "brainstorming": (_no_invention, _similar_or_covered),
}
"""Every purpose and its requirements (see the table in the module docstring)."""


class Verdicts(msgspec.Struct, frozen=True):
    """Purposes the form is safe for, not safe for (each with its reason), and risks."""

    safe_for: tuple[PurposeVerdict, ...]
    not_safe_for: tuple[PurposeVerdict, ...]
    risk_factors: tuple[str, ...]


def _safe_reason(m: Measurement) -> str:
    kept = sum(r.survived for r in m.spans)
    return (f"{kept}/{len(m.spans)} protected spans kept, nothing invented, "
            f"coverage {m.value('coverage') or 0.0:.3f}")


def risk_factors(m: Measurement) -> tuple[str, ...]:
    """What a reader of the compressed form should know, whatever the purpose."""
    risks: list[str] = []
    lost = _kinds_kept(None, "protected")(m)
    if lost:
        risks.append(lost)
    invented = _no_invention(m)
    if invented:
        risks.append(invented)
    risks.extend(f"structure lost: {kind}" for kind in m.lost_structure)
    coverage = m.value("coverage")
    if coverage is not None and coverage < 0.5:
        risks.append(f"low coverage of the input's salient terms ({coverage:.3f})")
    similarity = m.value("similarity")
    if similarity is None:
        risks.append("embedding similarity not measured")
    elif similarity < 0.7:
        risks.append(f"low embedding similarity to the input ({similarity:.3f})")
    return tuple(risks)


def judge(m: Measurement, purposes: Sequence[str] | None = None) -> Verdicts:
    """Apply the rules of each purpose (default: all of :data:`PURPOSES`) to ``m``."""
    safe: list[PurposeVerdict] = []
    unsafe: list[PurposeVerdict] = []
    for purpose in purposes if purposes is not None else PURPOSES:
        failures = [reason for check in PURPOSES[purpose] if (reason := check(m))]
        if failures:
            unsafe.append(PurposeVerdict(purpose=purpose, reason="; ".join(failures)))
        else:
            safe.append(PurposeVerdict(purpose=purpose, reason=_safe_reason(m)))
    return Verdicts(tuple(safe), tuple(unsafe), risk_factors(m))
