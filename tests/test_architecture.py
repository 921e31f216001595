"""The layout's rules, checked on the source tree (DESIGN.md "Layout and boundaries").

- Imports run one way: ``drivers`` ← ``gateway`` → ``analytics``; ``drivers`` and ``analytics``
  import nothing from the other two packages.
- No import cycle between modules.  Every import statement counts, wherever it sits (inside a
  function, under ``TYPE_CHECKING``): a lazy import hides a cycle, it does not remove it.
- A package's ``_`` modules are private: code outside the package imports what its ``__init__``
  names.
- Every task has a parent: no ``asyncio.create_task``/``ensure_future``/``loop.create_task``; tasks
  are started on a ``TaskGroup`` (``group.create_task`` / ``tg.create_task``).

An AST walk, no third-party tool: the rules are few and the walk is fast.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("drivers", "gateway", "analytics")
FORBIDDEN = {"drivers": ("gateway", "analytics"), "analytics": ("gateway", "drivers")}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def import_edges(name: str, path: Path, known: set[str]) -> Iterator[Edge]:
    """Project modules imported by ``name``: ``from pkg import sub`` is an edge to ``pkg.sub`` when
    that is a module, else to ``pkg``; a relative import is resolved against ``name``."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield Edge(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Edge(name, sub if sub in known else base, node.lineno)


def all_edges(root: Path = ROOT) -> list[Edge]:
    modules = source_modules(root)
    known = set(modules)
    return [e for name, path in modules.items() for e in import_edges(name, path, known)]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    """The package whose ``__init__`` is the public face of ``module``: the part before the first ``_`` name."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return module


def layer_violations(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        top, target = e.importer.split(".")[0], e.imported.split(".")[0]
        if target in FORBIDDEN.get(top, ()):
            out.append(f"{e.importer}:{e.line} imports {e.imported}")
    return sorted(set(out))


def private_violations(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        owner = package_of(e.imported)
        if owner == e.imported:
            continue
        if e.importer != owner and not e.importer.startswith(owner + "."):
            out.append(f"{e.importer}:{e.line} imports private {e.imported} (use {owner})")
    return out


_UNPARENTED = {("asyncio", "create_task"), ("asyncio", "ensure_future"), ("loop", "create_task"),
               ("asyncio", "run_coroutine_threadsafe")}


def unparented_tasks(root: Path = ROOT) -> list[str]:
    out = []
    for name, path in source_modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr, receiver = node.func.attr, node.func.value
            if attr not in ("create_task", "ensure_future", "run_coroutine_threadsafe"):
                continue
            text = ast.unparse(receiver)
            if isinstance(receiver, ast.Call) or (text.split(".")[-1], attr) in _UNPARENTED or \
                    ("group" not in text.lower() and text != "tg"):
                out.append(f"{name}:{node.lineno} {text}.{attr}(...)")
    return out


def undocumented_catch_alls(root: Path = ROOT) -> list[str]:
    """``except Exception``/``BaseException``/bare ``except`` that does not re-raise and has no
    ``backstop`` comment (on its line or the three above) saying why."""
    out = []
    for name, path in source_modules(root).items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = node.type
            names = [ast.unparse(e) for e in caught.elts] if isinstance(caught, ast.Tuple) else \
                [] if caught is None else [ast.unparse(caught)]
            if caught is not None and not {"Exception", "BaseException"} & set(names):
                continue
            if node.body and isinstance(node.body[-1], ast.Raise) and node.body[-1].exc is None:
                continue  # clean up and re-raise: nothing is swallowed
            around = " ".join(lines[max(0, node.lineno - 4):node.lineno])  # the except line and 3 above
            if "backstop" not in around:
                out.append(f"{name}:{node.lineno}")
    return out


def test_catch_alls_are_documented_backstops() -> None:
    assert undocumented_catch_alls() == []


def test_an_undocumented_catch_all_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"gateway/m.py": "try:\n    pass\nexcept Exception:\n    pass\n"
                                            "try:\n    pass\nexcept (OSError, Exception):  # backstop: why\n    pass\n"
                                            "try:\n    pass\nexcept BaseException:\n    print()\n    raise\n"})
    assert undocumented_catch_alls(root) == ["gateway.m:3"]


def test_drivers_and_analytics_import_nothing_above_them() -> None:
    assert layer_violations(all_edges()) == []


def test_no_import_cycles() -> None:
    assert cycles(all_edges()) == []


def test_other_packages_use_the_public_init() -> None:
    assert private_violations(all_edges()) == []


def test_every_task_is_started_on_a_task_group() -> None:
    assert unparented_tasks() == []


# -- the checks themselves can fail --------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


def test_a_lazy_import_cycle_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "gateway/a.py": "from gateway.b import x\n",
        "gateway/b.py": "def x():\n    from gateway import a\n    return a\n",
    })
    assert cycles(all_edges(root)) == [["gateway.a", "gateway.b"]]


def test_an_upward_import_from_drivers_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"drivers/m.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                            "    from gateway.errors import X\n"})
    assert layer_violations(all_edges(root)) == ["drivers.m:3 imports gateway.errors"]


def test_a_private_import_across_packages_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"gateway/sinks/__init__.py": "from gateway.sinks._w import W\n",
                            "gateway/sinks/_w.py": "W = 1\n",
                            "gateway/service.py": "from gateway.sinks._w import W\n"})
    assert private_violations(all_edges(root)) == [
        "gateway.service:1 imports private gateway.sinks._w (use gateway.sinks)"]


@pytest.mark.parametrize("call", ["asyncio.create_task(f())", "asyncio.ensure_future(f())",
                                  "loop.create_task(f())", "asyncio.get_running_loop().create_task(f())"])
def test_a_task_without_parent_is_found(tmp_path: Path, call: str) -> None:
    root = _tree(tmp_path, {"gateway/m.py": f"import asyncio\nasync def g(loop):\n    {call}\n"})
    assert len(unparented_tasks(root)) == 1


def test_a_task_group_task_is_allowed(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"gateway/m.py": "import asyncio\nasync def g():\n"
                                            "    async with asyncio.TaskGroup() as group:\n"
                                            "        group.create_task(g())\n"})
    assert unparented_tasks(root) == []
