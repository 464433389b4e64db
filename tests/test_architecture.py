"""The import graph of ``frontalize/``: no cycles, and every import allowed by ``../shared/ARCHITECTURE.md``.

The graph is read from the source with ``ast`` (no module is imported), so imports inside functions and under
``if TYPE_CHECKING:`` count like any other: a cycle hidden behind a lazy import is still a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "frontalize"

FOUNDATION = frozenset({"frontalize", "errors", "devices"})
"""Importable from everywhere: the package root (``__version__``), the error hierarchy and the device mapping."""

ALLOWED: Mapping[str, frozenset[str]] = {
    # the package root, the errors and the device mapping sit below everything
    "frontalize": frozenset(),
    "errors": frozenset(),
    "devices": frozenset({"errors"}),
    # values and files: they import no runner
    "config": frozenset(),
    "weights": frozenset({"config", "io"}),
    "io": frozenset(),
    # shared tools: neither pipeline nor evaluation
    "faces": frozenset({"config", "weights", "io"}),
    "stages": frozenset({"config", "weights", "io", "faces"}),
    "datasets": frozenset({"config", "io"}),
    # engines know arrays, not files, runners or the CLI (geometric may use faces for landmarks and pose)
    "liveportrait": frozenset({"config", "weights"}),
    "geometric": frozenset({"config", "faces"}),
    # Ray runtime helpers shared by the two distributed executors
    "ray_support": frozenset({"config", "weights"}),
    # the runners: pipeline never imports evaluation; evaluation never imports pipeline
    "pipeline": frozenset({"liveportrait", "geometric", "faces", "stages", "io", "weights", "config", "ray_support"}),
    "evaluation": frozenset({"faces", "datasets", "io", "weights", "config", "ray_support"}),
    # the only place that knows argv; nothing imports it
    "cli": frozenset({"pipeline", "evaluation", "config", "io", "weights", "ray_support"}),
}
"""Layer → the layers it may import (besides itself and :data:`FOUNDATION`). A layer is a top-level package or
module of ``frontalize/``; a new one must be added here, with the rule ARCHITECTURE.md gives it."""


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``root`` (packages named by their ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every (imported dotted name, line) of a module; ``from a import b`` yields ``a`` and ``a.b``."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Module → {imported module of the package: first line}; imports of a module's own parents are left out
    (``import a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, which is no cycle of the package)."""
    modules = module_files(root)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        for target, line in imported_names(name, path):
            if target in modules and target != name and not name.startswith(target + "."):
                graph[name].setdefault(target, line)
    return graph


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    """``frontalize.pipeline.guard`` → ``pipeline``; ``frontalize`` → ``frontalize``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def rule_violations(graph: Mapping[str, Mapping[str, int]], root: Path) -> list[str]:
    """One line per import that crosses layers against :data:`ALLOWED` (``root``: the package folder)."""
    modules = module_files(root)
    problems = []
    for module, targets in sorted(graph.items()):
        source = layer(module)
        allowed = ALLOWED.get(source, frozenset()) | {source} | (FOUNDATION if source not in FOUNDATION else set())
        for target, line in sorted(targets.items()):
            if layer(target) not in allowed:
                where = modules[module].relative_to(root.parent)
                problems.append(f"{where}:{line}: {module} imports {target} ({source} → {layer(target)} is not "
                                f"allowed; {source} may import {', '.join(sorted(ALLOWED.get(source, ()))) or 'none'})")
    return problems


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(PACKAGE)


def test_no_import_cycle_inside_frontalize(graph: dict[str, dict[str, int]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(c) for c in found)


def test_every_layer_has_a_rule() -> None:
    layers = {layer(name) for name in module_files(PACKAGE)}
    assert not layers - set(ALLOWED), f"layers without a dependency rule: {sorted(layers - set(ALLOWED))}"


def test_imports_follow_the_architecture_rules(graph: dict[str, dict[str, int]]) -> None:
    problems = rule_violations(graph, PACKAGE)
    assert not problems, "\n".join(problems)


def test_the_rules_forbid_what_architecture_md_forbids() -> None:
    """The data above encodes ARCHITECTURE.md's sentences (so a loosened rule fails here)."""
    assert not any("cli" in targets for targets in ALLOWED.values())  # nothing imports cli
    assert "evaluation" not in ALLOWED["pipeline"] and "pipeline" not in ALLOWED["evaluation"]
    for tool in ("faces", "stages"):
        assert not ALLOWED[tool] & {"pipeline", "evaluation", "cli"}
    for engine in ("liveportrait", "geometric"):
        assert not ALLOWED[engine] & {"pipeline", "evaluation", "cli"}
    runners = {"pipeline", "evaluation", "cli", "ray_support"}
    for values in ("config", "weights"):
        assert not ALLOWED[values] & runners
    assert ALLOWED["cli"] >= {"pipeline", "evaluation", "config"}
    assert ALLOWED["devices"] == {"errors"}


def test_checker_finds_a_cycle_and_a_forbidden_import(tmp_path: Path) -> None:
    """The checks themselves can fail: a tiny package with a cycle (also through TYPE_CHECKING) and a bad layer."""
    root = tmp_path / "frontalize"
    for rel, text in {
        "__init__.py": "",
        "faces/__init__.py": "",
        "faces/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from frontalize.faces import b\n",
        "faces/b.py": "def f():\n    from . import a\n",
        "faces/c.py": "import frontalize.pipeline.runner\n",
        "pipeline/__init__.py": "",
        "pipeline/runner.py": "from ..faces.c import x\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    fake = import_graph(root)
    assert sorted(map(tuple, cycles(fake))) == [("frontalize.faces.a", "frontalize.faces.b"),
                                                ("frontalize.faces.c", "frontalize.pipeline.runner")]
    problems = rule_violations(fake, root)
    assert len(problems) == 1 and "faces → pipeline is not allowed" in problems[0]
