"""Import structure of pnp_restore.priors: no import cycles, and loading a prior does not need OpenCV."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "pnp_restore.priors"
FOLDER = Path(__file__).resolve().parents[1] / "pnp_restore" / "priors"


def module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def import_graph() -> dict[str, set[str]]:
    """{module: modules of the package it imports}, from every import statement in the file,
    at module level or inside functions (a lazy import closes a cycle as surely as an eager one)."""
    files = {module_name(p): p for p in sorted(FOLDER.glob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # every module here sits in PACKAGE itself, __init__ included
                    parts = PACKAGE.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # ``from . import registry`` imports a module; ``from .load import load`` a name of one.
                candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in files and c != name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_parser_sees_module_and_function_level_imports():
    graph = import_graph()
    assert f"{PACKAGE}.checkpoints" in graph[f"{PACKAGE}.load"]  # module level
    assert f"{PACKAGE}.adm" in graph[f"{PACKAGE}.load"]  # inside a function
    assert f"{PACKAGE}.registry" in graph[f"{PACKAGE}.load"]  # ``from . import registry``
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_priors_have_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in pnp_restore.priors: " + " -> ".join(cycle)


def test_loaders_use_the_checkpoint_helpers_not_the_dispatcher():
    graph = import_graph()
    importers = sorted(name for name, targets in graph.items() if f"{PACKAGE}.load" in targets)
    assert importers == [PACKAGE]
    for loader in ("adm", "builtin", "diffusers", "edm"):
        assert f"{PACKAGE}.checkpoints" in graph[f"{PACKAGE}.{loader}"]


# Every ``import cv2`` statement outside OpenCV executed while the prior is imported and loaded,
# with the modules on the stack at that moment (innermost first).
SPY = r"""
import builtins, json, sys

real_import, seen = builtins.__import__, []

def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "?")
    if level == 0 and name.split(".")[0] == "cv2" and importer.split(".")[0] != "cv2":
        frame, stack = sys._getframe(1), []
        while frame is not None:
            stack.append(frame.f_globals.get("__name__", "?"))
            frame = frame.f_back
        seen.append(stack)
    return real_import(name, globals, locals, fromlist, level)

import torch  # noqa: F401  (torch's own start-up does not survive the spy; it is not what is checked)
builtins.__import__ = spy
from pnp_restore import priors
priors.load("builtin")
print(json.dumps({"loaded": "cv2" in sys.modules, "imports": seen}))
"""


@pytest.fixture(scope="module")
def opencv_imports() -> dict:
    res = subprocess.run([sys.executable, "-c", SPY], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_priors_do_not_import_opencv(opencv_imports):
    culprits = [
        stack for stack in opencv_imports["imports"]
        if any(m == "pnp_restore.data" or m.startswith(PACKAGE) for m in stack)
    ]
    chain = [m for m in culprits[0] if m.startswith("pnp_restore")] if culprits else []
    assert not culprits, f"importing or loading a prior imports OpenCV through {' <- '.join(chain)}"


def test_loading_a_prior_leaves_opencv_unloaded(opencv_imports):
    importers = sorted({stack[0] for stack in opencv_imports["imports"]})
    assert not opencv_imports["loaded"], f"`from pnp_restore import priors; priors.load('builtin')` imports OpenCV ({importers})"
