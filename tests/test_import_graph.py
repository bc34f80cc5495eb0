"""The package's import graph: no circles, lower layers never import upper
ones, and no source file over 450 lines (read from the source, so function-
level imports count too)."""

import ast
import os

import pytest

import keras_clip

ROOT = os.path.dirname(keras_clip.__file__)
LOWER = ("models", "losses", "data", "tokenizers", "utils")
UPPER = ("train", "training", "eval", "export", "cli")


def _modules():
    """module name -> file path, for every .py file of the package."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _package(module, modules):
    path = modules[module]
    return module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]


def import_graph():
    """module -> set of keras_clip modules it imports (anywhere in the file)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = _package(module, modules).split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                # The nearest module of the package that the import names.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # A module importing its own package's __init__ is Python's
                # import machinery, not a dependency.
                if target and target != module and not module.startswith(target + "."):
                    edges.add(target)
        graph[module] = edges
    return graph


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_the_checker_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _cycles(import_graph()) == []


def test_lower_layers_do_not_import_upper_ones():
    upward = []
    for module, edges in import_graph().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in LOWER:
            continue
        for target in edges:
            if target.split(".")[1:2] and target.split(".")[1] in UPPER:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_module_imports_the_root_package():
    """`keras_clip/__init__.py` imports the library eagerly (through importlib,
    which the graph above cannot see), so a module importing the root package
    itself, even lazily inside a function, closes a circle."""
    offenders = []
    for module, path in _modules().items():
        if module == "keras_clip":
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "keras_clip" for a in node.names):
                offenders.append(f"{module}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "keras_clip" and not node.level:
                offenders += [f"{module}:{node.lineno}" for a in node.names if f"keras_clip.{a.name}" not in _modules()]
    assert offenders == []


@pytest.mark.parametrize("limit", [450])
def test_no_source_file_over_the_limit(limit):
    long = {}
    for module, path in _modules().items():
        with open(path, encoding="utf-8") as f:
            count = sum(1 for _ in f)
        if count > limit:
            long[module] = count
    assert long == {}
