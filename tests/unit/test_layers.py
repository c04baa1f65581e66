"""No import cycle among radflow's modules, at run time or at the type level.

Reads the import statements of every module of the packages (ast, no import runs): those at
module level, including the ones under ``if TYPE_CHECKING:`` and ``try:``, since a cycle there
still ties the modules together for a reader and for mypy. Imports inside functions are left
out: they are the deliberate lazy ones (the CLI loads a subcommand's layer when it runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("radflow", "kernel", "ingest", "streams", "model", "training", "evaluation", "storage")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        if isinstance(node, ast.If):
            yield from _statements(node.body)
            yield from _statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _statements(block)
        else:
            yield node


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the packages that this module imports at module level."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import module` depends on the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                out.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 80 and graph["streams.agents.score"] >= {"streams.pairing", "storage.repository"}
    assert cycles(graph) == []


def test_the_kernel_imports_no_layer_and_no_layer_imports_the_composition_root() -> None:
    """kernel/ is what every layer may import; radflow/ (CLI, services, demo) imports the layers,
    never the other way round."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    for name, imported in graph.items():
        top = name.split(".")[0]
        if top == "kernel":
            assert {m.split(".")[0] for m in imported} <= {"kernel"}, name
        elif top != "radflow":
            assert not any(m.split(".")[0] == "radflow" for m in imported), name
