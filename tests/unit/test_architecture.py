"""The import rules of docs/DEVELOPING.md, checked by an ast pass over src/torchbuild
(tests/importgraph.py; ``python tests/importgraph.py src`` prints the numbers)."""

from __future__ import annotations

from pathlib import Path

from importgraph import cycles, graph, imports, late_imports, modules

SRC = Path(__file__).resolve().parents[2] / "src"
MODULES = modules(SRC)
GRAPH = graph(MODULES)


def _importers(prefix: str) -> list[str]:
    return [f"{m}:{i.line} imports {i.target}" for m in MODULES for i in imports(m, MODULES)
            if i.target == prefix or i.target.startswith(prefix + ".")]


def test_the_ast_pass_sees_the_package() -> None:
    assert {"torchbuild.pipeline", "torchbuild.command", "torchbuild.options"} <= set(MODULES)
    assert "torchbuild.plan" in GRAPH["torchbuild.pipeline"]
    # and it would see a cycle
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules() -> None:
    assert cycles(GRAPH) == []
    assert cycles(graph(MODULES, late=True)) == []   # none dodged by a late import either


def test_no_function_level_imports_of_torchbuild_modules() -> None:
    assert late_imports(MODULES) == []


def test_resources_import_nothing_from_torchbuild() -> None:
    """They run inside another interpreter (the env under test, the measured python)."""
    bad = [f"{m}:{i.line} imports {i.target}" for m in MODULES
           if m.startswith("torchbuild.resources.") for i in imports(m, MODULES)
           if i.target.split(".")[0] == "torchbuild"]
    assert bad == []


def test_only_main_and_commands_import_commands() -> None:
    bad = [line for line in _importers("torchbuild.commands")
           if not line.startswith(("torchbuild.commands", "torchbuild.__main__:"))]
    assert bad == []


def test_only_command_py_imports_subprocess() -> None:
    bad = [line for line in _importers("subprocess")
           if not line.startswith("torchbuild.command:")]
    assert bad == []


# Every wing imports only downward. Spine modules are their own rank; a wing is a subpackage.
RANK = {"torchbuild": 0, "resources": 0, "errors": 1, "cc": 2, "command": 2, "logger": 2,
        "locks": 2, "digest": 2, "options": 3, "knowledge": 4, "machine": 5, "plan": 6, "env": 7,
        "build": 8, "proof": 9, "pipeline": 10, "commands": 11, "__main__": 12}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_wing_imports_only_downward() -> None:
    assert {_wing(m) for m in MODULES} <= set(RANK), "give a new module or wing its rank"
    upward = [f"{m} ({_wing(m)}) imports {t} ({_wing(t)})"
              for m, targets in GRAPH.items() for t in targets
              if _wing(m) != _wing(t) and RANK[_wing(m)] <= RANK[_wing(t)]]
    assert upward == []
