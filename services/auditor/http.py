"""HTTP face of the auditor, for the gateway to mount: ``app.include_router(audit_router(cfg))``.

- ``GET /v1/audit/verify?full=false`` → the :class:`VerifyReport` as JSON (200 whether or not
  the chain is intact: read ``ok`` and ``first_break``);
- ``GET /v1/audit/verify?full=true&progress=true`` → NDJSON: ``{"progress": …}`` lines about
  once a second, then ``{"report": …}`` (long runs stay observable, proxies see bytes flow);
- ``GET /v1/audit/status`` → chain head, lag, latest checkpoint, last verification.

Errors are :class:`~libs.events.MnemosError` and are mapped by the gateway's one handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from libs.events import Progress, VerifyReport
from libs.runtime.config import Config
from services.auditor.status import audit_status
from services.auditor.verify import verify

__all__ = ["audit_router", "verify_ndjson"]

_JSON = msgspec.json.Encoder()


async def verify_ndjson(config: Config, full: bool) -> AsyncIterator[bytes]:
    """Progress lines then the report, each one JSON object per line."""
    queue: asyncio.Queue[Progress | VerifyReport | BaseException] = asyncio.Queue()

    async def work() -> None:
        try:
            await queue.put(await verify(config, full=full, progress=queue.put_nowait))
        except BaseException as exc:  # delivered to the reader below
            await queue.put(exc)

    task = asyncio.create_task(work())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            key = "progress" if isinstance(item, Progress) else "report"
            yield _JSON.encode({key: item}) + b"\n"
            if key == "report":
                return
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def audit_router(config: Config) -> APIRouter:
    """The ``/v1/audit`` routes bound to ``config``'s system."""
    router = APIRouter(prefix="/v1/audit", tags=["audit"])

    @router.get("/verify", response_model=None)
    async def verify_chain(
        full: bool = Query(False, description="Recompute from genesis, not from the last "
                           "verified point."),
        progress: bool = Query(False, description="Stream NDJSON progress lines first."),
    ) -> Response:
        """Recompute the hash chain from the stream and compare it with the stored one."""
        if progress:
            return StreamingResponse(verify_ndjson(config, full),
                                     media_type="application/x-ndjson")
        report = await verify(config, full=full)
        return Response(_JSON.encode(report), media_type="application/json")

    @router.get("/status", response_model=None)
    async def status() -> Response:
        """Chain head, lag behind the stream, latest checkpoint, last verification."""
        body: dict[str, Any] = await audit_status(config)
        return Response(_JSON.encode(body), media_type="application/json")

    return router
