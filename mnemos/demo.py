"""A short demonstration run by ``mnemos up --demo``: write, read back, search."""

from __future__ import annotations

import sys
import uuid
from typing import Final

import blake3

from mnemos.client import GatewayClient

__all__ = ["demo_command_id", "run_demo"]

_DEMO_EPOCH_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z

_MEMORIES = [
    ("The user prefers dark mode in every editor.", ["preference", "ui"]),
    ("Quarterly revenue grew 12% to 4.2M EUR in Q3 2026.", ["finance"]),
    ("Deploys happen on Tuesdays after the 10:00 standup.", ["process"]),
]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def demo_command_id(content: str) -> str:
    """A fixed UUIDv7 per demo memory (timestamp 2026-01-01, the rest from the content), so
    running the demo again is a retry of the same commands and adds nothing."""
    rand = int.from_bytes(blake3.blake3(content.encode()).digest(length=10), "big") >> 6
    value = (_DEMO_EPOCH_MS << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | (rand & ((1 << 62) - 1))))


def run_demo(http_url: str, ns: str = "demo", credential: str | None = None) -> None:
    """Remember three facts, read one back with its provenance, and search in plain words.

    Idempotent: every start of ``./scripts/up`` runs it, and the memories are written once."""
    client = GatewayClient(http_url, principal="demo", credential=credential)
    last_seq = 0
    _say(f"Demo in namespace '{ns}':")
    first_id = ""
    for content, tags in _MEMORIES:
        result = client.remember(ns, content, tags=tags, command_id=demo_command_id(content),
                                 actor={"agent_id": "demo-agent", "model": "none"})
        last_seq = max(last_seq, int(result["seq"]))
        first_id = first_id or str(result["memory_id"])
        verb = "already remembered" if result.get("duplicate") else "remembered"
        _say(f"  {verb} {result['memory_id']} at stream seq {result['seq']}: {content}")
    memory = client.get(ns, first_id, after_seq=last_seq)
    _say(f"  read back {first_id}: by {memory.get('created_by')}, tags {memory.get('tags')}")
    for query in ("what theme does the user like", "how much did revenue grow"):
        found = client.search(ns, query, k=1, after_seq=last_seq)
        hits = found.get("hits", [])
        top = hits[0]["memory"]["content"] if hits else "(nothing)"
        _say(f"  search {query!r} -> {top}")
    _say("Demo done; the system keeps running. Ctrl-C stops it.")
