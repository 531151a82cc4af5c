"""The import graph flows one way (issue 10): cli -> api -> stages -> io -> errors.

Every ``import`` in segcli's modules is read with ``ast`` (those inside functions too), so a
stage that reaches back up to the API or the CLI, or an edge module that reaches into a stage,
fails here before it becomes a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "segcli"
CLI = {"segcli.cli", "segcli.usage", "segcli.__main__"}  # the command line (Typer)
API = {"segcli.api", "segcli"}  # the public API; the package re-exports it
# module -> the segcli modules it may import. PostgreSQL is an I/O backend below io (postgresql:// inputs and
# outputs): io hands it the scratch folder and makes its spool a Source; postgres reads the date column's
# name with parse.resolve_columns.
EDGE = {"segcli.io": {"segcli.errors", "segcli.postgres"},
        "segcli.postgres": {"segcli.errors", "segcli.parse"},
        "segcli.errors": set()}
API_NAMES = {"load_config", "read_transactions", "segment", "rfm", "pareto", "lifetimes_summary", "diff", "validate",
             "explain"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
STAGES = sorted(set(MODULES) - CLI - API - set(EDGE))


def imported(name: str) -> set[str]:
    """The segcli modules ``name`` imports; ``from segcli import X`` names ``segcli.X`` when X
    is a module, else the package (the API), except ``__version__``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "segcli"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "segcli":
            if node.module != "segcli":
                # ``from segcli.engines import spark`` imports the submodule
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                          for a in node.names}
                continue
            for alias in node.names:
                if alias.name in API_NAMES:
                    found.add("segcli.api")
                elif f"segcli.{alias.name}" in MODULES:
                    found.add(f"segcli.{alias.name}")
                elif alias.name != "__version__":
                    found.add("segcli")
    return found


def cycles() -> list[list[str]]:
    """The import cycles among segcli's modules: each strongly connected set of two or more
    modules (Tarjan), sorted."""
    graph = {m: sorted(imported(m) & set(MODULES) - {m}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle() -> None:
    """No module reaches itself through its imports, those made inside functions included:
    the graph flows one way, edges (io, postgres, errors) at the bottom."""
    assert cycles() == []


def test_a_cycle_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: io importing loading (which imports io) is a cycle."""
    real = imported
    monkeypatch.setitem(globals(), "imported",
                        lambda name: real(name) | ({"segcli.loading"} if name == "segcli.io" else set()))
    assert any({"segcli.io", "segcli.loading"} <= set(group) for group in cycles())


def test_from_a_package_import_a_submodule_is_that_submodule() -> None:
    assert "segcli.engines.spark" in imported("segcli.engines")
    assert "segcli.engines" not in imported("segcli.engines.spark")


def test_the_layers_cover_every_module() -> None:
    assert {"segcli.cli", "segcli.api", "segcli.io", "segcli.errors", "segcli.loading", "segcli.pipeline",
            "segcli.rfm"} <= set(MODULES)
    assert len(STAGES) > 10


@pytest.mark.parametrize("name", STAGES)
def test_no_stage_imports_the_api_or_the_cli(name: str) -> None:
    assert not imported(name) & (API | CLI), f"{name} imports {sorted(imported(name) & (API | CLI))}"


@pytest.mark.parametrize("name", sorted(EDGE))
def test_io_and_errors_import_no_stage(name: str) -> None:
    assert imported(name) <= EDGE[name], f"{name} imports {sorted(imported(name) - EDGE[name])}"


def test_the_api_does_not_import_the_cli() -> None:
    assert not imported("segcli.api") & CLI
    assert not imported("segcli") & CLI


@pytest.mark.parametrize("name", sorted(set(MODULES) - CLI))
def test_only_the_cli_imports_typer(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "typer" not in names and "click" not in names
