"""The package's layering (docs/architecture.md), read from the source with `ast`: every import
counts, including those inside functions, so a cycle cannot hide behind a late import."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mnistlab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str) -> set[str]:
    """Every module `name` imports (internal ones resolved to a module of the package;
    external ones by their top-level name), at any depth of its code."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the containing package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        for target in targets:
            if target.startswith("mnistlab"):
                while target not in MODULES:  # e.g. mnistlab.x.function -> mnistlab.x
                    target = target.rpartition(".")[0]
                found.add(target)
            else:
                found.add(target.split(".")[0])
    found.discard(name)
    return found


GRAPH = {name: {m for m in imports_of(name) if m in MODULES} for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(GRAPH[v])
    return seen


def test_the_walker_sees_imports_inside_functions():
    # checkpoint.py imports the NumPy bridge inside load_checkpoint only.
    assert "mnistlab.checkpoint_npz" in GRAPH["mnistlab.checkpoint"]
    assert "torch" in imports_of("mnistlab.checkpoint")


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_scratch_is_a_numpy_leaf():
    """mnistlab.scratch and everything it imports use neither torch nor train/checkpoint."""
    scratch = [m for m in MODULES if m == "mnistlab.scratch" or m.startswith("mnistlab.scratch.")]
    closure = set().union(*(reachable(m) for m in scratch))
    forbidden = sorted(m for m in closure if m.startswith(("mnistlab.train", "mnistlab.checkpoint",
                                                           "mnistlab.cli")))
    assert forbidden == []
    uses_torch = sorted(m for m in closure if "torch" in imports_of(m))
    assert uses_torch == []


def documented_layers() -> dict[str, int]:
    """{top-level name under mnistlab ("data", "errors", ...): layer} from the table in
    docs/architecture.md: the page is the specification, this test holds the code to it."""
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    layers: dict[str, int] = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        for name in re.findall(r"`([\w./]+)`", cells[1]):
            layers[name.rstrip("/").removesuffix(".py")] = int(cells[0])
    return layers


LAYERS = documented_layers()


def top(module: str) -> str:
    """mnistlab.data.idx -> data; mnistlab -> __init__ (the package's own module)."""
    return module.split(".")[1] if module.count(".") else "__init__"


def test_the_layer_table_is_read():
    assert LAYERS["errors"] == 0 and LAYERS["cli"] > LAYERS["train"] > LAYERS["data"]
    assert LAYERS["notadigit"] < LAYERS["train"] < LAYERS["predict"]


def test_every_module_has_a_documented_layer():
    assert sorted({top(m) for m in MODULES} - set(LAYERS)) == []


def test_every_import_goes_to_a_lower_layer():
    """Every pair of packages: an import leaves its own package only for a lower layer
    (never the same layer, never a higher one)."""
    wrong = sorted(f"{m} -> {t}" for m in MODULES for t in GRAPH[m]
                   if top(t) != top(m) and LAYERS[top(t)] >= LAYERS[top(m)])
    assert wrong == []


def test_the_layer_check_catches_an_upward_import():
    graph = {"mnistlab.data.x": {"mnistlab.train.loop"}}
    wrong = [(m, t) for m, ts in graph.items() for t in ts
             if LAYERS[top(t)] >= LAYERS[top(m)]]
    assert wrong == [("mnistlab.data.x", "mnistlab.train.loop")]


@pytest.mark.parametrize("low", ["mnistlab.data", "mnistlab.train", "mnistlab.notadigit"])
def test_data_train_and_notadigit_do_not_import_predict(low):
    modules = [m for m in MODULES if m == low or m.startswith(low + ".")]
    assert sorted(f"{m} -> {t}" for m in modules for t in GRAPH[m]
                  if t.startswith("mnistlab.predict")) == []


def test_the_architecture_page_names_every_package():
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    packages = sorted({m.split(".")[1] for m in MODULES if m.count(".") >= 1} - {"__main__"})
    missing = [p for p in packages if p not in page]
    assert missing == [], json.dumps(missing)
