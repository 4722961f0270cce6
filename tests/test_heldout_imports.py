"""The held-out set stays out of the library: nothing in src/mnistlab imports the benchmark
generators (the held-out pictures, or the development ones), and they no longer live there."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnistlab"
FORBIDDEN = ("benchmarks", "heldout", "photolike", "devset")


def imported_names(path: Path) -> list[str]:
    """Every module name an import statement of `path` mentions, at any depth of its code
    (`from a.b import c` gives "a.b" and "a.b.c"; relative imports keep their dots)."""
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def offending(path: Path) -> list[str]:
    return [name for name in imported_names(path)
            if any(part in FORBIDDEN for part in name.replace(".", " ").split())]


def test_the_checker_catches_each_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import benchmarks.realworld\nfrom heldout import build\n"
                   "def f():\n    from mnistlab.data import photolike\n"
                   "    from .devset import x\n")
    assert offending(bad) == ["benchmarks.realworld", "heldout", "heldout.build",
                              "mnistlab.data.photolike", ".devset", ".devset.x"]
    good = tmp_path / "good.py"
    good.write_text("import numpy\nfrom mnistlab.data import negatives\n")
    assert offending(good) == []


def test_src_never_imports_the_benchmark_generators():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the walk really saw the package
    found = {str(p.relative_to(PACKAGE)): offending(p) for p in files}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_generators_live_under_benchmarks_only():
    assert not (PACKAGE / "data" / "photolike.py").exists()
    assert not list(PACKAGE.rglob("heldout*")) and not list(PACKAGE.rglob("devset*"))
    benchmarks = PACKAGE.parents[1] / "benchmarks"
    assert (benchmarks / "devset.py").is_file()
    assert (benchmarks / "heldout" / "__init__.py").is_file()
