"""The package's layers, read from the import graph of the source: no import cycles (counting the
package `__init__` modules an import runs), the config tree at the bottom, and each layer pointing
only down (eval and the agent never reach into the trainer, the engines never into the agent)."""

import ast
import functools
import os

import pytest

from tests.conftest import ROOT

# Source folders and the package name they are installed under.
SOURCES = {"arpo": os.path.join(ROOT, "arpo"), "arpo.kernels": os.path.join(ROOT, "kernels")}
# Who may not import whom: (importer prefix, forbidden prefixes, allowed exceptions).
RULES = [
    ("arpo.config", ("arpo",), ("arpo.config", "arpo.errors")),
    ("arpo.errors", ("arpo",), ("arpo.errors",)),
    ("arpo.eval", ("arpo.trainer",), ()),
    ("arpo.agent", ("arpo.trainer", "arpo.eval"), ()),
    ("arpo.rollout", ("arpo.agent", "arpo.trainer", "arpo.eval"), ()),
    ("arpo.kernels", ("arpo",), ("arpo.kernels", "arpo.errors")),
]


def modules() -> dict[str, str]:
    """Every module name -> its file."""
    found = {}
    for package, folder in SOURCES.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = os.path.relpath(dirpath, folder)
            parts = [package] + ([] if rel == "." else rel.split(os.sep))
            for name in filenames:
                if name.endswith(".py"):
                    stem = name[:-3]
                    found[".".join(parts if stem == "__init__" else [*parts, stem])] = os.path.join(
                        dirpath, name
                    )
    return found


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(max(0, node.level - 1)):
        base = base.rpartition(".")[0]
    source = node.module or ""
    if node.level:
        source = f"{base}.{source}".rstrip(".") if source else base
    subs = {f"{source}.{alias.name}" for alias in node.names}
    return (subs & known) | ({source} if subs - known else set())


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """module -> the arpo modules importing it runs: its imports (anywhere in the file) and the
    `__init__` of every package above them that is not one of its own."""
    files = modules()
    known = set(files)
    graph = {}
    for module, path in files.items():
        is_package = path.endswith("__init__.py")
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        direct = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                direct |= {t for t in _targets(node, module, is_package, known) if t in known}
        own = {module.rsplit(".", i)[0] for i in range(module.count(".") + 1)}
        edges = set()
        for target in direct:
            parts = target.split(".")
            edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} - own
            edges.add(target)
        graph[module] = (edges - {module}) & known
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert {"arpo.config", "arpo.agent.rollout", "arpo.rollout.native.engine", "arpo.kernels"} <= set(graph)
    assert "arpo.config.root" in graph["arpo.config.loader"]
    # An import of a submodule runs its package's __init__: that is an edge too.
    assert "arpo.rollout.vllm" in graph["arpo.agent.engine"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("importer, forbidden, allowed", RULES, ids=[rule[0] for rule in RULES])
def test_layers_point_down(importer, forbidden, allowed):
    bad = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if _under(module, importer)
        for target in targets
        if any(_under(target, f) for f in forbidden) and not any(_under(target, a) for a in allowed)
    )
    assert bad == []


def test_the_checks_catch_what_they_guard():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
