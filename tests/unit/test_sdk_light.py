"""The SDK stays light: importing it loads the wire contract and its three clients' libraries,
nothing of the server (no pydantic, Postgres driver, web framework, model runtime)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "psycopg", "psycopg_pool", "fastapi", "starlette", "uvicorn", "onnxruntime",
         "numpy", "tokenizers", "structlog", "prometheus_client", "typer", "mcp", "services",
         "mnemos", "libs.runtime", "libs.readmodel", "libs.consumer", "libs.auth")


def test_importing_the_sdk_loads_nothing_of_the_server() -> None:
    code = "import json, sys, mnemos_sdk; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                       capture_output=True, text=True).stdout)
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []
    own = {m.split(".")[0] for m in loaded if m.startswith(("libs", "mnemos_sdk"))}
    assert own == {"libs", "mnemos_sdk"}
    assert {m for m in loaded if m.startswith("libs.")} <= {
        m for m in loaded if m.startswith(("libs.events", "libs.dag"))}
