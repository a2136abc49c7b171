"""Schemathesis against the gateway's own OpenAPI document (issue 10, defect 8; issue 14): with a
valid key, positive and negative data on every operation, stateful where the links allow it:
no server error and no response that contradicts the document."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from libs.runtime.config import Config
from tests.e2e.test_security import _admin_key, _secured
from tests.support.auditor import running_auditor
from tests.support.compressor import running_compressor
from tests.support.registry import one_provider, running_registry
from tests.support.services import running_gateway
from tests.support_http import ReplayServer

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("MNEMOS_SCHEMATHESIS_EXAMPLES", "12"))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection,unsupported_method,"
          "allow_header_conformance")


async def run_schemathesis(base: str, key: str, report: Path, seed: int = 7) -> tuple[int, str]:
    """Run the schemathesis CLI against ``base``; its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(seed),
        "--header", f"Authorization: Bearer {key}", "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--generation-deterministic",
        "--request-timeout", "20", "--report", "junit", "--report-dir", str(report),
        "--no-color", cwd=report.parent, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return int(process.returncode or 0), out.decode(errors="replace")


@pytest.mark.timeout(900)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
        config: Config, nats_js: Any, tmp_path: Path) -> None:
    secured = _secured(config)
    admin = await _admin_key(nats_js)
    with ReplayServer() as provider:
        async with running_auditor(secured), running_compressor(secured), \
                running_gateway(secured) as (http, _nc), \
                running_registry(secured, one_provider(provider)):
            headers = {"Authorization": f"Bearer {admin}"}
            for _ in range(600):  # registry_sync answers once it has folded the stream
                ready = await http.get("/v1/default/route", headers=headers)
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            for _ in range(300):  # the compressor answers its operations (no 503 at start)
                probe = await http.get("/v1/x/memories/x/receipts", headers=headers)
                if probe.status_code != 503:
                    break
                await asyncio.sleep(0.1)
            base = str(http.base_url).rstrip("/")
            code, output = await run_schemathesis(base, admin, tmp_path / "report")
    assert code == 0, output[-12000:]
