"""The import graph of a source tree, by an ast pass (no imports executed).

``python tests/importgraph.py [SRC]`` prints the numbers DEVELOPING.md quotes: modules, import
cycles, function-level imports of the package, the largest module. tests/unit/test_architecture.py
uses the same functions to enforce the rules.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Import:
    target: str      # the imported module (``from pkg import sub`` counts as ``pkg.sub``)
    top: bool        # at module level (not inside a function)
    line: int


def module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(src: Path, package: str = "torchbuild") -> dict[str, Path]:
    return {module_name(src, p): p for p in sorted((src / package).rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path,
             known: dict[str, Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        base = importlib.util.resolve_name("." * node.level + base, package)
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if full in known else base


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imports(module: str, known: dict[str, Path]) -> list[Import]:
    """Every import of ``module``; those under ``if TYPE_CHECKING:`` are left out."""
    path = known[module]
    tree = _parsed(path)
    out: list[Import] = []

    def walk(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend(Import(t, top, child.lineno)
                           for t in _targets(child, module, path, known))
            walk(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda)))

    walk(tree, True)
    return out


def graph(known: dict[str, Path], *, late: bool = False) -> dict[str, set[str]]:
    """Module-level imports between the package's own modules (``late``: function-level ones
    too, i.e. the cycles such imports were dodging)."""
    return {m: {i.target for i in imports(m, known) if (i.top or late) and i.target in known
                and i.target != m} for m in known}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def late_imports(known: dict[str, Path], package: str = "torchbuild") -> list[str]:
    return [f"{m}:{i.line} imports {i.target}" for m in known for i in imports(m, known)
            if not i.top and i.target.split(".")[0] == package]


def report(src: Path) -> dict[str, object]:
    known = modules(src)
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in known.items()}
    largest = max(sizes, key=sizes.__getitem__)
    return {"modules": len(known), "import cycles": cycles(graph(known)),
            "import cycles held by function-level imports": cycles(graph(known, late=True)),
            "function-level imports": len(late_imports(known)),
            "largest module": f"{largest} ({sizes[largest]} lines)"}


if __name__ == "__main__":
    for key, value in report(Path(sys.argv[1] if len(sys.argv) > 1 else "src")).items():
        print(f"{key}: {value}")
