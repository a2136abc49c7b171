"""Queries over the reasoning layer's read models (migration 0009): ``models``."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from libs.events import NotFound
from libs.events.reasoning import (
    ConsultAnswerView,
    ConsultContextView,
    ConsultFailureView,
    ConsultResult,
    ListModels,
    ModelsView,
    ModelView,
    ProviderView,
)
from libs.events.registry import ClaimData, ClusterData, DissentData, ModelRecordData

__all__ = ["get_consultation", "list_models"]

Conn = Any

_COLUMNS: Final = ("key, provider, model_id, record, sources, liveness, missing_syncs,"
                   " suspect_reason, suspect_detail, retired_reason, stale, ranking, listed_seq,"
                   " updated_seq, updated_at")


def _view(row: dict[str, Any]) -> ModelView:
    record = msgspec.convert({**row["record"], "key": row["key"], "provider": row["provider"],
                              "model_id": row["model_id"], "sources": row["sources"]},
                             ModelRecordData)
    return msgspec.convert({
        "key": row["key"], "record": record, "liveness": row["liveness"],
        "missing_syncs": row["missing_syncs"], "suspect_reason": row["suspect_reason"],
        "suspect_detail": row["suspect_detail"], "retired_reason": row["retired_reason"],
        "stale": row["stale"], "ranking": row["ranking"], "listed_seq": row["listed_seq"],
        "updated_seq": row["updated_seq"], "updated_at": row["updated_at"]}, ModelView,
        from_attributes=True)


def _where(request: ListModels) -> tuple[str, dict[str, Any]]:
    clauses = ["TRUE"]
    params: dict[str, Any] = {}
    if request.key is not None:
        clauses.append("key = %(key)s")
        params["key"] = request.key
    if request.provider is not None:
        clauses.append("provider = %(provider)s")
        params["provider"] = request.provider
    if request.family is not None:
        clauses.append("family = %(family)s")
        params["family"] = request.family
    if request.capability is not None:
        clauses.append("%(capability)s = ANY(capabilities)")
        params["capability"] = request.capability
    if request.liveness is not None:
        clauses.append("liveness = %(liveness)s")
        params["liveness"] = request.liveness
    elif not request.include_retired:
        clauses.append("liveness <> 'retired'")
    return " AND ".join(clauses), params


async def _providers(conn: Conn) -> tuple[ProviderView, ...]:
    cur = await conn.execute(
        "SELECT provider, last_outcome, last_seq, last_synced_at, last_failed_at, last_sync,"
        ' last_error FROM registry_providers ORDER BY provider COLLATE "C"')
    return tuple(msgspec.convert(dict(row), ProviderView) for row in await cur.fetchall())


async def list_models(conn: Conn, request: ListModels) -> ModelsView:
    """A page of registry models in key (byte) order, with every provider's sync status; a
    ``key`` that names no model is :class:`NotFound`."""
    where, params = _where(request)
    cur = await conn.execute(f"SELECT count(*) AS n FROM registry_models WHERE {where}", params)
    counted = await cur.fetchone()
    total = int(counted["n"]) if counted else 0
    page_where = where
    if request.after is not None:
        page_where += ' AND key COLLATE "C" > %(after)s'
        params = params | {"after": request.after}
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM registry_models WHERE {page_where}"
        ' ORDER BY key COLLATE "C" LIMIT %(limit)s', params | {"limit": request.limit + 1})
    rows = [dict(r) for r in await cur.fetchall()]
    if request.key is not None and not rows:
        raise NotFound(f"no model {request.key} in the registry", key=request.key)
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    return ModelsView(models=tuple(_view(r) for r in rows), total=total,
                      next_after=rows[-1]["key"] if more and rows else None,
                      providers=await _providers(conn))


async def get_consultation(conn: Conn, ns: str, consultation_id: str
                           ) -> tuple[str, ConsultResult | None] | None:
    """A projected consultation: its prompt and, once it has a verdict, its result rebuilt
    from its events (``duplicate`` set); None when there is no such consultation."""
    cur = await conn.execute(
        "SELECT prompt, status, result, updated_seq FROM registry_consultations"
        " WHERE ns = %s AND consultation_id = %s", (ns, consultation_id))
    row = await cur.fetchone()
    if row is None:
        return None
    if row["status"] == "running":
        return str(row["prompt"]), None
    cur = await conn.execute(
        "SELECT type, data FROM registry_events WHERE ns = %s AND aggregate = 'consultation'"
        " AND aggregate_id = %s ORDER BY seq", (ns, consultation_id))
    steps = [dict(r) for r in await cur.fetchall()]
    started = next(s["data"] for s in steps if s["type"] == "ConsultationStarted")
    answers = tuple(msgspec.convert(s["data"], ConsultAnswerView) for s in steps
                    if s["type"] == "ConsultationAnswerReceived")
    failed = tuple(msgspec.convert(s["data"], ConsultFailureView) for s in steps
                   if s["type"] == "ConsultationModelFailed")
    verdict = row["result"]
    reached = row["status"] == "reached"
    result = ConsultResult(
        consultation_id=consultation_id, reached=reached, method=verdict["method"],
        answer_key=verdict.get("answer_key"), answer=verdict.get("answer"),
        agreement=verdict["agreement"], threshold=verdict["threshold"],
        reason=verdict.get("reason"),
        clusters=msgspec.convert(verdict.get("clusters", []), tuple[ClusterData, ...]),
        claims=msgspec.convert(verdict.get("claims", []), tuple[ClaimData, ...]),
        dissent=msgspec.convert(verdict.get("dissent", []), tuple[DissentData, ...]),
        answers=answers, failed=failed,
        context=ConsultContextView(chars=started["context_chars"],
                                   hash=started["context_hash"],
                                   receipts=tuple(started["context_receipts"])),
        last_seq=int(row["updated_seq"]), duplicate=True)
    return str(row["prompt"]), result
