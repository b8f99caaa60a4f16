"""The import graph of edmbench, read with ``ast`` (nothing is imported): layering and cycles.

Dependencies point down: study -> sampling, generate, metrics, pretrained -> denoisers; never the reverse
(docs/architecture.md). Edges are ``import`` / ``from ... import`` statements, relative ones resolved; an
import under ``if TYPE_CHECKING:`` is not an edge. ``from pkg import name`` is an edge to ``pkg`` (its
``__init__``) and, when ``pkg.name`` is a module, to that module too.

Function-level (lazy) imports count. They avoid import-time cost, not dependencies: a lower layer that
imports an upper one lazily still depends on it, and two modules that import each other, even lazily, are
one design unit split in two. So the cycle rule is checked twice: at module level (importing any module
never meets a partially initialised one) and with the lazy imports included.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import edmbench

ROOT = Path(edmbench.__file__).parent


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every edmbench/**/*.py (packages by their __init__.py)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if modules()[module].name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


@cache
def imports(module: str, lazy: bool) -> frozenset[str]:
    """edmbench modules that ``module`` imports (``lazy``: also inside functions)."""
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import | ast.ImportFrom) and (lazy or not in_function):
                found.update(t for t in _targets(child, module) if t in modules())
            visit(child, inside)

    visit(ast.parse(modules()[module].read_text(encoding="utf-8")), False)
    found.discard(module)
    return frozenset(found)


def cycles(lazy: bool) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough for this size)."""
    graph = {m: imports(m, lazy) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """'a -> b' for every import (lazy included) from ``package`` into one of ``forbidden`` (outside
    ``package`` itself)."""
    return [f"{m} -> {t}" for m in modules() if in_package(m, package)
            for t in sorted(imports(m, lazy=True))
            if not in_package(t, package) and any(in_package(t, f) for f in forbidden)]


def test_the_graph_sees_known_edges():
    """The reader works: edges we know exist are found (so an empty result below means something)."""
    assert "edmbench.sampling.config" in imports("edmbench.sampling.api", lazy=False)
    assert "edmbench.sampling.schedules" in imports("edmbench.sampling.discretizations", lazy=False)
    assert "edmbench.denoisers.iddpm" in imports("edmbench.sampling.discretizations", lazy=True)
    assert "edmbench.plugins" in imports("edmbench.metrics.features", lazy=True)
    assert "edmbench.plugins" not in imports("edmbench.metrics.features", lazy=False)  # lazy only


def test_no_import_cycle_at_module_level():
    assert cycles(lazy=False) == []


def test_no_import_cycle_even_through_function_level_imports():
    assert cycles(lazy=True) == []


LOWER_LAYERS = {  # package -> the packages above it, which it must never import (not even lazily)
    "edmbench.denoisers": ("edmbench.sampling", "edmbench.metrics", "edmbench.study", "edmbench.generate",
                           "edmbench.pretrained", "edmbench.digits", "edmbench.plots", "edmbench.cli"),
    "edmbench.sampling": ("edmbench.metrics", "edmbench.study", "edmbench.generate", "edmbench.pretrained",
                          "edmbench.digits", "edmbench.plots", "edmbench.cli"),
    "edmbench.metrics": ("edmbench.study", "edmbench.digits"),
    "edmbench.registry": ("edmbench",),
    "edmbench.plugins": ("edmbench",),
}


@pytest.mark.parametrize("package", sorted(LOWER_LAYERS))
def test_lower_layers_never_import_upper_ones(package):
    assert offending(package, LOWER_LAYERS[package]) == []


def test_metrics_does_not_name_digits():
    """Not even in a string (a lazy importlib call is still a dependency): digits registers its extractor
    through edmbench.plugins."""
    named = [str(p.relative_to(ROOT)) for m, p in modules().items() if in_package(m, "edmbench.metrics")
             and "edmbench.digits" in p.read_text(encoding="utf-8")]
    assert named == []


def test_sampling_modules_do_not_import_their_own_package():
    """edmbench/sampling/__init__.py imports its submodules; one that imported ``edmbench.sampling`` back
    would see a partially initialised package (import order would decide what works)."""
    assert [m for m in modules() if in_package(m, "edmbench.sampling") and m != "edmbench.sampling"
            and "edmbench.sampling" in imports(m, lazy=False)] == []
