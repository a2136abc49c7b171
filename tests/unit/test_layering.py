"""The layering rules of the tree (DESIGN §1 and §10), checked on every run:

- a service imports only ``libs`` (and itself): never another service, never the CLI;
- ``libs`` import no service and not the CLI;
- nothing outside ``libs/readmodel`` writes SQL against the read-model tables;
- ``libs/events`` (the contract) imports no other Mnemos package but the pure ``libs/dag``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
READ_MODEL_TABLES = ("memories", "memory_versions", "memory_events", "memory_links",
                     "memory_branches", "command_results", "projection_checkpoints",
                     "dead_letters", "embedding_cache", "lexical_docs", "lexical_df",
                     "lexical_ns_stats")
_SQL = re.compile(r"\b(FROM|JOIN|INTO|UPDATE)\s+(" + "|".join(READ_MODEL_TABLES) + r")\b")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_services_import_only_libs_and_themselves() -> None:
    offences = []
    for service in sorted(p for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()):
        for path in service.rglob("*.py"):
            for module in _imports(path):
                top = module.split(".")
                if top[0] == "mnemos" or (top[0] == "services" and top[1:2] != [service.name]):
                    offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offences == []


def test_libs_import_no_service_and_not_the_cli() -> None:
    offences = [f"{path.relative_to(ROOT)} imports {module}"
                for path in (ROOT / "libs").rglob("*.py") for module in _imports(path)
                if module.split(".")[0] in ("services", "mnemos")]
    assert offences == []


def test_only_libs_readmodel_writes_sql_against_the_read_models() -> None:
    offences = []
    for folder in ("services", "mnemos", "libs"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.is_relative_to(ROOT / "libs" / "readmodel"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if _SQL.search(line):
                    offences.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offences == []


def test_the_contract_imports_no_other_mnemos_package() -> None:
    """``libs/events`` is what every process (and the SDK) shares: it stands on its own, beside
    the pure DAG rules it names (``libs/dag``: standard library only)."""
    offences = [f"{path.relative_to(ROOT)} imports {module}"
                for path in (ROOT / "libs" / "events").rglob("*.py") for module in _imports(path)
                if module.split(".")[0] in ("services", "mnemos")
                or (module.startswith("libs.") and module.split(".")[1] not in ("events", "dag"))]
    assert offences == []
