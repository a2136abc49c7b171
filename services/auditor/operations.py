"""The auditor's queries on the bus (``mnemos.svc.auditor.<name>``): chain status and
verification, answered here so verification runs in the auditor's process, never the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from libs.auth import Principal
from libs.events import (
    OPERATIONS,
    AuditStatus,
    AuditVerifyRequest,
    Operation,
    Progress,
    VerifyReport,
)
from libs.runtime.bus import OperationHandler
from libs.runtime.bus import Progress as SendProgress
from libs.runtime.config import Config
from services.auditor.status import audit_status
from services.auditor.verify import verify

__all__ = ["AUDITOR_OPERATIONS", "auditor_handlers"]

AUDITOR_OPERATIONS: Final[Mapping[str, Operation]] = {
    name: op for name, op in OPERATIONS.items() if op.owner == "auditor"}
"""The catalog's operations this service answers."""


def auditor_handlers(config: Config) -> dict[str, OperationHandler]:
    """Handlers of :data:`AUDITOR_OPERATIONS` over ``config``'s system."""

    async def status(principal: Principal, ns: str, request: Any, send: SendProgress
                     ) -> AuditStatus:
        return msgspec.convert(await audit_status(config), AuditStatus)

    async def verify_chain(principal: Principal, ns: str, request: AuditVerifyRequest,
                           send: SendProgress) -> VerifyReport:
        # Progress goes out whether or not the caller shows it: it also tells the gateway that
        # a long verification is alive.
        pending: asyncio.Queue[Progress] = asyncio.Queue()
        work = asyncio.create_task(verify(config, full=request.full, progress=pending.put_nowait))
        try:
            while not work.done():
                getter = asyncio.ensure_future(pending.get())
                await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    await send(getter.result())
                else:
                    getter.cancel()
            return work.result()
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work

    return {"audit_status": status, "audit_verify": verify_chain}
