"""The ``mnemos`` verbs of every tenant operation, generated from the operation catalog.

Each operation of ``libs/events/operations.py`` outside the reserved namespace becomes a
command (``set_metadata`` -> ``mnemos set-metadata``): the memory id (and a ``content`` or ``q``
text) are arguments, every other field of the request an option under its wire name (a list
field repeats its option in the singular: ``--tag a --tag b``; a map takes ``--metadata
key=value``, the value read as JSON when it is JSON). Values are coerced to the field types by
the contract's own converter, as on an HTTP query string, so the CLI accepts what the gateway
accepts. Output is for people unless ``--json`` (here or before the verb) asks for the reply.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, Final

import msgspec
import typer
from msgspec import inspect as mi

from libs.events import OPERATIONS, CommandActor, InvalidInput, MnemosError, Operation, path_fields
from libs.events import convert_params as convert
from mnemos import own_writes
from mnemos.console import fail
from mnemos.output import print_reply

__all__ = ["register_verbs"]

_TEXT_FIELDS: Final = ("content", "q", "task")
"""Free text taken as an argument after the memory id (``task``: the context verb)."""
_SKIPPED: Final = frozenset({"actor"})
_ALIASES: Final = {"search": ("recall",)}
NS_HELP: Final = "Namespace (tenant): 1-64 characters of a-z, 0-9, _ and -."


def _inner(tp: mi.Type) -> mi.Type:
    if isinstance(tp, mi.UnionType):
        rest = [t for t in tp.types if not isinstance(t, mi.NoneType)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _kind(tp: mi.Type) -> str:
    inner = _inner(tp)
    if isinstance(inner, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return "list"
    if isinstance(inner, mi.DictType):
        return "map"
    if isinstance(inner, mi.BoolType):
        return "bool"
    if isinstance(inner, mi.StructType):
        return "struct"
    return "scalar"


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"  # capabilities -> capability
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]  # tags -> tag, from_versions -> from_version
    return word


def _flag(wire: str, kind: str) -> str:
    name = _singular(wire) if kind == "list" else wire
    return "--" + name.replace("_", "-")


def _parse_map(items: list[str], field: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--{field} takes KEY=VALUE, got {item!r}", field=field)
        try:
            found[key] = json.loads(text)
        except ValueError:
            found[key] = text
    return found


class _Verb:
    """One generated command: its parameters and how they become the request struct."""

    def __init__(self, op: Operation) -> None:
        self.op = op
        positional = list(dict.fromkeys(name for route in op.routes
                                        for name in path_fields(route.path)))
        self.fields = [f for f in mi.type_info(op.request).fields  # type: ignore[attr-defined]
                       if f.encode_name not in _SKIPPED]
        wires = {f.encode_name for f in self.fields}
        positional += [t for t in _TEXT_FIELDS if t in wires]
        self.positional = positional
        self.has_actor = issubclass(op.request, msgspec.Struct) and any(
            f.encode_name == "actor" for f in mi.type_info(op.request).fields)  # type: ignore[attr-defined]

    def parameters(self) -> list[inspect.Parameter]:
        params: list[inspect.Parameter] = []
        for field in self.fields:
            kind = _kind(field.type)
            help_text = f"{field.encode_name} ({'required' if field.required else 'optional'})"
            if field.encode_name in self.positional:
                default: Any = typer.Argument(... if field.required else None,
                                              help=field.encode_name,
                                              metavar=field.encode_name.upper())
                annotation: Any = str if field.required else str | None
            elif kind in ("list", "map"):
                flag = _flag(field.encode_name, kind)
                hint = "KEY=VALUE, repeatable" if kind == "map" else "repeatable"
                default = typer.Option([], flag, help=f"{field.encode_name} ({hint})")
                annotation = list[str]
            elif kind == "bool":
                flag = _flag(field.encode_name, kind)
                default = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text)
                annotation = bool | None
            elif kind == "scalar":
                default = typer.Option(... if field.required else None,
                                       _flag(field.encode_name, kind), help=help_text)
                annotation = str if field.required else str | None
            else:
                continue
            params.append(inspect.Parameter(f"f_{field.name}", inspect.Parameter.KEYWORD_ONLY,
                                            default=default, annotation=annotation))
        flags = {_flag(f.encode_name, _kind(f.type)) for f in self.fields}
        if self.op.namespace is None and "--ns" not in flags:
            params.append(inspect.Parameter("ns", inspect.Parameter.KEYWORD_ONLY,
                                            default=typer.Option("default", "--ns",
                                                                 help=NS_HELP),
                                            annotation=str))
        if self.has_actor and "--agent-id" not in flags:
            params.append(inspect.Parameter(
                "agent_id", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                default=typer.Option(None, "--agent-id", help="Agent id recorded as "
                                     "provenance.")))
        if "--json" not in flags:
            params.append(inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY,
                                            annotation=bool, default=typer.Option(
                                                False, "--json", help="Print the reply as JSON.")))
        return params

    def request(self, values: dict[str, Any]) -> msgspec.Struct:
        wire: dict[str, Any] = {}
        for field in self.fields:
            value = values.get(f"f_{field.name}")
            if value is None or value == []:
                continue
            if _kind(field.type) == "map":
                value = _parse_map(value, field.encode_name)
            wire[field.encode_name] = value
        if values.get("agent_id"):
            wire["actor"] = msgspec.to_builtins(CommandActor(agent_id=values["agent_id"]))
        built: msgspec.Struct = convert(wire, self.op.request, self.op.name)
        return built

    def callback(self) -> Callable[..., None]:
        def run(**values: Any) -> None:
            from mnemos.console import sdk_client, wants_json

            ns = values.get("ns")
            try:
                request = self.request(values)
                with sdk_client() as client:
                    request = own_writes.apply(self.op, ns, request)
                    reply = client.call(self.op.name, request, ns=ns)
                own_writes.record(self.op, ns, reply)
            except MnemosError as exc:
                fail(exc)
            print_reply(self.op, reply, as_json=values.get("as_json", False) or wants_json())

        run.__signature__ = inspect.Signature(self.parameters())  # type: ignore[attr-defined]
        run.__name__ = self.op.name
        run.__doc__ = self.op.summary
        return run


def register_verbs(app: typer.Typer, taken: frozenset[str] = frozenset()) -> None:
    """One command per tenant operation of the catalog (plus aliases such as ``recall``);
    a name in ``taken`` (the hand-written commands) keeps its own command."""
    for op in OPERATIONS.values():
        if op.namespace is not None:
            continue  # keys and the audit chain have their own command groups
        names = [n for n in (op.name.replace("_", "-"), *_ALIASES.get(op.name, ()))
                 if n not in taken]
        if names:
            callback = _Verb(op).callback()
            for name in names:
                app.command(name, help=op.summary)(callback)
