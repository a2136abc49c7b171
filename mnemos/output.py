"""Replies for people: a few lines per view, the important fields first; ``--json`` prints the
reply itself. A view this module does not know (an operation added since) is shown as indented
``key: value`` lines, so every verb prints something readable."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from libs.events import Operation

__all__ = ["format_reply", "print_reply"]

_WIDTH: Final = 72


def _short(text: str, width: int = _WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _when(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else "-"


def _result(op: Operation, r: dict[str, Any]) -> list[str]:
    what = "repeat of an earlier command: nothing appended" if r.get("duplicate") else (
        f"{r['event_type']} appended")
    lines = [f"{op.name}: {what}", f"  memory   {r['memory_id']}"]
    if r.get("version_id"):
        lines.append(f"  version  {r['version_id']}")
    lines.append(f"  seq {r['seq']}  revision {r['revision']}  command {r['command_id']}")
    return lines


def _memory(m: dict[str, Any]) -> list[str]:
    lines = [f"{m['memory_id']}  ({m['kind']}, {m['version_count']} version(s), "
             f"revision {m['revision']})"]
    if m.get("tags"):
        lines.append(f"  tags      {', '.join(m['tags'])}")
    creator = m["created_by"]
    lines.append(f"  created   {_when(m['created_at'])} by {creator.get('principal')}"
                 + (f" / {creator['agent_id']}" if creator.get("agent_id") else ""))
    lines.append(f"  updated   {_when(m['updated_at'])} by {m['updated_by'].get('principal')}")
    if m.get("source"):
        lines.append(f"  source    {m['source']}")
    for key, value in sorted(m.get("metadata", {}).items()):
        lines.append(f"  {key} = {json.dumps(value)}")
    for link in m.get("links", []):
        lines.append(f"  -> {link['relation']} {link['target_memory_id']}")
    lines += ["", *(f"  {line}" for line in m["content"].splitlines() or [""])]
    return lines


def _page(p: dict[str, Any]) -> list[str]:
    lines = [f"{m['memory_id']}  {_when(m['created_at'])}  {m['kind']:<8} "
             f"{_short(m['content'], 48)}" + (f"  [{', '.join(m['tags'])}]" if m['tags'] else "")
             for m in p["items"]]
    lines.append(f"({len(p['items'])} memories" + (f"; next page: --cursor {p['next_cursor']})"
                                                    if p.get("next_cursor") else ")"))
    return lines


def _search(s: dict[str, Any]) -> list[str]:
    lines = [f"{i:>2}. {h['score']:.3f}  {h['memory']['memory_id']}  "
             f"{_short(h['memory']['content'], 56)}" for i, h in enumerate(s["hits"], 1)]
    return lines or [f"no memory matches {s['q']!r}"]


def _history(h: dict[str, Any]) -> list[str]:
    lines = [f"memory {h['memory_id']}: {len(h['versions'])} version(s), "
             f"{len(h['events'])} event(s)"]
    lines += [f"  seq {e['seq']:>6}  {_when(e['at'])}  {e['type']:<22} "
              f"{e['actor'].get('principal')}" for e in h["events"]]
    return lines


def _log(v: dict[str, Any]) -> list[str]:
    lines = [f"{e['version_id']}  {_when(e['created_at'])}  {e['origin']:<9} "
             f"{e['branch']:<12} parents {','.join(p[:8] for p in e['parent_ids']) or '-'}"
             for e in v["entries"]]
    if v.get("next_cursor"):
        lines.append(f"(more: --cursor {v['next_cursor']})")
    return lines


def _branches(v: dict[str, Any]) -> list[str]:
    return [f"{b['branch']:<20} {b['head_version_id']}  {_when(b['updated_at'])}"
            for b in v["branches"]]


def _diff(v: dict[str, Any]) -> list[str]:
    return str(v.get("unified", "")).splitlines() or ["(no difference)"]


def _generic(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines: list[str] = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines += [f"{pad}{key}:", *_generic(item, indent + 1)]
            else:
                lines.append(f"{pad}{key}: {json.dumps(item, default=str)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            sub = _generic(item, indent + 1)
            lines += [f"{pad}- {sub[0].strip()}", *sub[1:]] if sub else [f"{pad}-"]
        return lines
    return [f"{pad}{json.dumps(value, default=str)}"]


_BY_VIEW: Final[dict[str, Callable[[dict[str, Any]], list[str]]]] = {
    "MemoryView": _memory, "MemoryPage": _page, "SearchResults": _search,
    "HistoryView": _history, "LogView": _log, "BranchesView": _branches, "DiffView": _diff,
}


def format_reply(op: Operation, reply: Any) -> str:
    """The reply of ``op`` for people."""
    data = msgspec.to_builtins(reply)
    if op.kind == "command" and op.reply.__name__ == "CommandResult":
        return "\n".join(_result(op, data))
    render = _BY_VIEW.get(op.reply.__name__)
    try:
        return "\n".join(render(data) if render else _generic(data))
    except (KeyError, TypeError):  # a view that changed shape: still readable
        return "\n".join(_generic(data))


def print_reply(op: Operation, reply: Any, *, as_json: bool) -> None:
    """Print ``reply`` as JSON (``--json``) or for people."""
    if as_json:
        sys.stdout.write(json.dumps(msgspec.to_builtins(reply), indent=2) + "\n")
    else:
        sys.stdout.write(format_reply(op, reply) + "\n")
