"""The shape of the code (STYLE.md): modules import downward only, no
import cycles, nothing reaches into another module's private members, and
the executor stays split into parts a reader finds by name."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("hermetic/*.py"), *ROOT.glob("recipes/**/*.py"), *ROOT.glob("plugins/*.py")])


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(tree: ast.AST, *, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)  # type: ignore[attr-defined]
    out: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
            out |= {f"{n.module}.{a.name}" for a in n.names}
    return out


def test_no_upward_imports_and_no_cycles():
    mods = {_module(p): p for p in SOURCES}
    graph = nx.DiGraph()
    upward = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        graph.add_node(name)
        for imp in _imports(tree, top_level_only=True):
            if imp in mods and imp != name:
                graph.add_edge(name, imp)
        for imp in _imports(tree, top_level_only=False):
            top = imp.split(".")
            if name.startswith("hermetic") and top[0] in ("recipes", "plugins"):
                upward.append(f"{name} imports {imp}: the engine must not know its plugins")
            if name.startswith(("recipes", "plugins")) and top[0] == "hermetic" and len(top) > 1 \
                    and top[1].startswith("_"):
                upward.append(f"{name} imports {imp}: plugins use hermetic's public modules only")
    assert upward == []
    assert list(nx.simple_cycles(graph)) == []


def test_no_module_reaches_into_another_modules_private_members():
    """``obj._name`` is only written where ``_name`` is defined: in the same module."""
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        own = set()
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                own.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                own.add(n.id)
            elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                own.add(n.target.id)
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__") \
                    and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")) \
                    and n.attr not in own:
                found.append(f"{path.relative_to(ROOT)}:{n.lineno}: {ast.unparse(n)}")
    assert found == []


def test_the_executor_is_split_into_parts():
    limits = {"hermetic/_execution.py": {"Executor"}}
    sizes = {}
    for rel, classes in limits.items():
        for n in ast.parse((ROOT / rel).read_text()).body:
            if isinstance(n, ast.ClassDef) and n.name in classes:
                sizes[n.name] = n.end_lineno - n.lineno + 1
    assert set(sizes) == {"Executor"}
    assert sizes["Executor"] <= 200, sizes
    # keys, artifacts, runners and the scheduler are modules of their own
    for part in ("_keys", "_artifacts", "_runners", "_scheduler"):
        assert (ROOT / "hermetic" / f"{part}.py").is_file()
