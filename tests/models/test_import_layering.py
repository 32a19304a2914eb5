"""Import layering: ``glmtune.models`` never imports ``glmtune.methods``, and every module imports on its own.

The static checks read the source with ``ast`` (imports inside functions and
``importlib.import_module("...")`` literals included); the dynamic one imports each glmtune module
alone in a fresh process, so an import cycle that only breaks in some import order is caught.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "glmtune"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (top level, functions, ``import_module`` literals)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import submodule``
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def glmtune_imports(path: Path) -> set[str]:
    """The glmtune modules ``path`` imports (names resolved to a module file)."""
    out = set()
    for target in imported_names(path):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target.startswith("glmtune.") and target != module_name(path):
            out.add(target)
    return out


def test_models_never_import_methods() -> None:
    offenders = {
        module_name(p): sorted(n for n in imported_names(p) if n == "glmtune.methods" or n.startswith("glmtune.methods."))
        for p in (PACKAGE / "models").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_models_and_methods_have_no_import_cycles() -> None:
    """No cycle among glmtune.models / glmtune.methods modules, counting imports inside functions too."""
    layer = {m for m in MODULES if m.startswith(("glmtune.models", "glmtune.methods"))}
    graph = {m: glmtune_imports(MODULES[m]) & layer for m in layer}
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(layer):
        if start not in done:
            visit(start, [start], done)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_two_former_cycles_stay_broken() -> None:
    tok = PACKAGE / "models" / "tokenization"
    assert "glmtune.models.tokenization.chatglm3" not in glmtune_imports(tok / "chatglm2.py")
    family = PACKAGE / "models" / "family"
    for path in family.glob("*.py"):
        assert "glmtune.models.families" not in glmtune_imports(path), path.name
    assert not {m for m in glmtune_imports(family / "base.py") if m.startswith("glmtune.models.family")}


def import_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """The nodes that run when the module is imported (function bodies do not)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def third_party_imports() -> list[list[str]]:
    """``[module, name...]`` for each non-glmtune import that runs when a glmtune module is imported
    (what the fork server preloads)."""
    found: dict[str, set[str]] = {}
    for path in MODULES.values():
        for node in import_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, set())
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.setdefault(node.module, set()).update(a.name for a in node.names if a.name != "*")
    return [[m, *sorted(names)] for m, names in sorted(found.items()) if m.split(".")[0] not in ("glmtune", "__future__")]


# Imports each module in a child forked from a process that already holds the third-party modules
# glmtune imports (but no glmtune module): each child starts with no glmtune module loaded, as a fresh
# ``python -c "import MODULE"`` would, without paying torch/transformers' import time per module.
FORK_SERVER = r"""
import importlib, json, os, sys, traceback, warnings
warnings.simplefilter("ignore")
modules, preload = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for module, *names in preload:  # names too: transformers and others import their members lazily
    try:
        loaded = importlib.import_module(module)
        for name in names:
            getattr(loaded, name, None)
    except BaseException:
        pass
assert not any(m == "glmtune" or m.startswith("glmtune.") for m in sys.modules)

def import_alone(name):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            out, code = "", 0
        except BaseException:
            out, code = traceback.format_exc(limit=8), 1
        with os.fdopen(write, "w") as pipe:
            pipe.write(out)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    return os.waitpid(pid, 0)[1] == 0, out

failures = {}
for name in modules:
    ok, out = import_alone(name)
    if not ok:
        failures[name] = out or "failed"
print(json.dumps(failures))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_on_its_own() -> None:
    """``python -c "import glmtune.X"`` works for every X (no import cycle broken by import order)."""
    modules = sorted(m for m in MODULES if m != "glmtune.__main__")  # __main__ runs the CLI
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", FORK_SERVER, json.dumps(modules), json.dumps(third_party_imports())],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{tb}" for name, tb in failures.items())

