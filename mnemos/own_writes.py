"""Read-your-writes across ``mnemos`` invocations: ``mnemos remember ...`` then ``mnemos recall
...`` must find the memory even when the projection is a moment behind.

Each write the CLI makes records its stream sequence per namespace in
``MNEMOS_HOME/cli-seq.json``; a later query in that namespace passes it as ``after_seq`` (unless
the caller gave one), so the gateway waits (bounded) until the read models include it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import msgspec

from libs.events import Operation
from libs.runtime.config import load_config

__all__ = ["apply", "record"]


def _path() -> Path:
    return load_config().home.expanduser() / "cli-seq.json"


def _load() -> dict[str, int]:
    try:
        found = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, int)} if isinstance(found, dict) else {}


def apply(op: Operation, ns: str | None, request: msgspec.Struct) -> msgspec.Struct:
    """``request`` with ``after_seq`` set to this user's last write in ``ns``, for a query."""
    if op.kind != "query" or ns is None or getattr(request, "after_seq", 0) is not None:
        return request
    seq = _load().get(ns)
    return request if seq is None else msgspec.structs.replace(request, after_seq=seq)


def record(op: Operation, ns: str | None, reply: Any) -> None:
    """Remember the stream sequence of a write in ``ns`` (best effort: never fails a verb)."""
    seq = getattr(reply, "seq", None)
    if op.kind != "command" or ns is None or not isinstance(seq, int):
        return
    with contextlib.suppress(OSError):
        path = _path()
        path.parent.mkdir(parents=True, exist_ok=True)
        state = _load()
        state[ns] = max(seq, state.get(ns, 0))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)
