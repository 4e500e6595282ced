"""The import graph of the project is a set of floors with every arrow pointing down
(docs/design.md, "Layers and arrows"): no import cycle anywhere, counting imports inside
functions too (a lazy import that only breaks a cycle is still one), and the engine, the data
package and the optimizers never import what sits above them.

The graph is read from the source with `ast` (nothing is imported); the four code folders map
to the import root `minigrad` as pyproject.toml's package-dir does."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = {"minigrad": "minigrad", "optim": "minigrad.optim", "datasets": "minigrad.datasets",
           "cli": "minigrad.cli"}


def project_modules():
    """{module name: (path, is_package)} for every .py file of the four code folders."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join([package] + (parts[:-1] if is_package else parts))
            out[name] = (path, is_package)
    return out


MODULES = project_modules()


def _known(name):
    """The longest prefix of a dotted name that is a project module (None outside it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported(module):
    """The project modules `module` imports, anywhere in the file."""
    path, is_package = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(_known(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from package import module` imports the submodule; `from module import name`
            # the module itself
            found.update(_known(f"{target}.{a.name}") if f"{target}.{a.name}" in MODULES
                         else _known(target) for a in node.names)
    found.discard(None)
    found.discard(module)
    return found


GRAPH = {module: imported(module) for module in MODULES}


def cycles(graph):
    """Every strongly connected component of more than one module (Tarjan's algorithm,
    iterative), each as a sorted list."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_relative_and_absolute_imports():
    assert "minigrad.cli.training" in MODULES and "minigrad.optim.kfac" in MODULES
    assert "minigrad.optim.optimizer" in GRAPH["minigrad.optim.sgd"]      # from .optimizer import
    assert "minigrad.tensor" in GRAPH["minigrad.function"]


def test_there_is_no_import_cycle_anywhere():
    assert cycles(GRAPH) == []


def package(module):
    """Which floor of the project a module is on: the command line, the optimizers, the data
    or the engine (everything else under minigrad)."""
    for name in ("minigrad.cli", "minigrad.optim", "minigrad.datasets"):
        if module == name or module.startswith(name + "."):
            return name.rpartition(".")[2]
    return "engine"


# what each floor may import (docs/design.md): cli -> optim, datasets, engine; optim -> engine;
# datasets -> nothing of ours; the engine -> itself only
ALLOWED = {"cli": {"cli", "optim", "datasets", "engine"}, "optim": {"optim", "engine"},
           "datasets": {"datasets"}, "engine": {"engine"}}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "minigrad"))
def test_every_arrow_points_down(module):
    """No module imports a floor above its own (the import root `minigrad`, which re-exports the
    engine, counts as the engine)."""
    up = sorted(t for t in GRAPH[module] if package(t) not in ALLOWED[package(module)])
    assert up == []
