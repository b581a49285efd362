"""The library's import structure: no cycle, no private name across modules, one loading entry point on top."""
import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "fwsvd_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """Every (module, names) that `path` imports anywhere in it, function bodies included, relative ones resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            # `from . import x` imports the module x
            found += [(f"{target}.{n}", []) for n in names] if not node.module else [(target, names)]
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target, _ in imports_of(path) if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules, or [] (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_fwsvd_core_has_no_import_cycle():
    assert find_cycle(import_graph()) == []


# The subpackages in the order data moves through them; the shared plumbing first, the applications last.
LAYERS = [
    {"fwsvd_core.errors", "fwsvd_core.devices", "fwsvd_core.folders", "fwsvd_core.cache", "fwsvd_core.access",
     "fwsvd_core.lazy"},
    {"fwsvd_core.inputs"},
    {"fwsvd_core.estimation"},
    {"fwsvd_core.compression"},
    {"fwsvd_core.analysis"},
    {"fwsvd_core.demo", "fwsvd_core.loading", "fwsvd_core.jobs", "fwsvd_core.screens", "fwsvd_core.cli", "fwsvd_core.commands",
     "fwsvd_core.__main__", "fwsvd_core"},
]


def layer_of(module: str) -> int:
    for level, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members if m != "fwsvd_core"):
            return level
    assert module == "fwsvd_core", f"{module} is in no layer: add it to LAYERS"
    return len(LAYERS) - 1


def test_every_module_sits_in_a_subpackage_of_the_flow_and_imports_only_its_own_or_earlier_ones():
    upward = [(name, dep) for name, deps in import_graph().items() for dep in deps if layer_of(dep) > layer_of(name)]
    assert upward == []


def test_every_subpackage_declares_what_it_exports():
    import importlib

    for package in ("inputs", "estimation", "compression", "analysis", "compression.methods"):
        module = importlib.import_module(f"fwsvd_core.{package}")
        assert module.__all__ and all(hasattr(module, name) for name in module.__all__), package


def test_only_the_public_api_and_the_command_line_import_the_loading_entry_point():
    graph = import_graph()
    importers = sorted(name for name, deps in graph.items() if "fwsvd_core.loading" in deps)
    assert importers == ["fwsvd_core", "fwsvd_core.commands"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_private_name_is_imported_from_another_module_and_no_streamlit(path):
    for target, names in imports_of(path):
        assert not target.startswith("streamlit"), f"{path.name} imports streamlit"
        if target.startswith("fwsvd_core"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.name} imports {private} from {target}"


def test_the_public_api_names_what_it_exports():
    import fwsvd_core

    missing = [name for name in fwsvd_core.__all__ if not hasattr(fwsvd_core, name)]
    assert not missing and "load_model" in fwsvd_core.__all__ and "CompressionSession" in fwsvd_core.__all__
