"""Structure rules of the product code (``attack_engine/``, ``app/``): acyclic imports, short functions.

Both walk the source text (``ast``), so they see every import, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attack_engine", "app")
MAX_LINES = 80
# Functions still over the limit, each with the work that removes it (an entry that no longer applies is ignored).
PENDING: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> product modules it imports (an import of ``a.b.c`` counts for the longest known prefix)."""
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import; write the absolute module path")
            deps.update(d for d in map(known, names) if d)
        # a package's own __init__ runs before its submodules anyway: an edge to an ancestor package is no cycle
        graph[mod] = {d for d in deps if d != mod and not mod.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_product_code():
    graph = import_graph()
    assert "attack_engine.losses" in graph and "app.ui" in graph  # the walk saw the code
    assert "attack_engine.registry" in graph["attack_engine.losses"]
    assert cycles(graph) == []


def test_engine_imports_no_app_code_and_views_run_nothing():
    graph = import_graph()
    assert not [m for m, deps in graph.items() if m.startswith("attack_engine") and any(d.startswith("app") for d in deps)]
    for view in ("app.export", "app.view", "app.figures", "app.trajectory"):  # draw records; load and run nothing
        assert not graph[view] & {"app.runner", "app.sessions", "attack_engine.models", "attack_engine.models.registry"}, view


def long_functions() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT).as_posix()

        def walk(node: ast.AST, prefix: str, rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        n = child.end_lineno - child.lineno + 1
                        if n > MAX_LINES:
                            out.append((rel, name, n))
                    walk(child, name + ".")

        walk(tree, "")
    return out


def test_no_function_over_80_lines():
    over = [(f, name, n) for f, name, n in long_functions() if (f, name) not in PENDING]
    assert over == [], "split these functions: " + ", ".join(f"{f}:{name} ({n} lines)" for f, name, n in over)
