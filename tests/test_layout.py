"""The shape of the code: dependencies point one way (search -> models -> crossbar), the
layers of search/ likewise, no import cycle anywhere (imports inside functions count;
those under ``if TYPE_CHECKING`` do not), and no module over 450 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crossbar", "models", "search")
MAX_LINES = 450

#: search/'s layers, lowest first: a module imports from its own layer or below.
SEARCH_LAYERS = {
    "data": ("errors", "seeds", "space", "pareto", "records", "sections", "codesign", "methods", "networks", "schema",
             "config"),
    "planning": ("plan",),
    "running": ("trial", "codesign_trial", "executors", "folder", "experiment", "codesign_run"),
    "presentation": ("report", "summary", "figures", "cost_figures", "codesign_report", "plot"),
    "command": ("run", "evaluate"),
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, at any depth but TYPE_CHECKING blocks."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            targets = []
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_no_module_is_over_450_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


@pytest.mark.parametrize("package, forbidden", [("crossbar", ("models", "search")), ("models", ("search",))])
def test_dependencies_point_one_way(package, forbidden):
    wrong = {name: sorted(t for t in targets if t.split(".")[0] in forbidden)
             for name, targets in GRAPH.items() if name.split(".")[0] == package}
    assert not any(wrong.values()), wrong


def test_search_imports_only_its_own_layer_or_below():
    rank = {f"search.{m}": i for i, layer in enumerate(SEARCH_LAYERS.values()) for m in layer}
    assert set(rank) == {name for name in GRAPH if name.startswith("search.")}, "a module without a layer"
    upward = {name: sorted(t for t in GRAPH[name] if t in rank and rank[t] > rank[name]) for name in rank}
    assert not any(upward.values()), upward


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH.get(name, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target, path + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name, [name])


def test_the_checks_see_imports():
    """The graph is not empty by mistake: known edges are in it."""
    assert "search.schema" in GRAPH["search.config"] and "crossbar.metrics" in GRAPH["crossbar.evaluate"]
    assert "search.experiment" in GRAPH["search.run"]  # an import inside a function counts
    assert "search.schema" not in GRAPH["search.methods"]  # one under TYPE_CHECKING does not
