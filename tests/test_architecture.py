"""The layers and the lint rules of ``pyproject.toml`` hold: ``lint-imports`` (the import-linter
contracts: data flows one way, the report never runs a model) and ``ruff check`` pass, and no
function of the package is longer than :data:`MAX_FUNCTION_LINES`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"expected {name!r} on PATH (pip install -e '.[test]'), got none")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_import_layers_hold():
    out = _run(_tool("lint-imports"), "--no-cache")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_ruff_finds_nothing():
    out = _run(_tool("ruff"), "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_a_backwards_import_is_caught(tmp_path):
    """The contract is not vacuous: a copy of the package where the report imports the runner
    breaks it."""
    pkg = tmp_path / "gmxai_eval"
    shutil.copytree(ROOT / "gmxai_eval", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (pkg / "report" / "_backwards.py").write_text("from gmxai_eval.runner import run  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode != 0 and "gmxai_eval.report._backwards" in out.stdout


#: The longest a function of the package may be (lines, from ``def`` to its last line).
MAX_FUNCTION_LINES = 120
#: Functions allowed over the limit, as ``(path, name)``: none.
_LONG_FUNCTION_EXCEPTIONS: set[tuple[str, str]] = set()


def _functions(path: Path):
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_the_limit():
    long = []
    for path in sorted((ROOT / "gmxai_eval").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, line, n in _functions(path):
            if n > MAX_FUNCTION_LINES and (rel, name) not in _LONG_FUNCTION_EXCEPTIONS:
                long.append(f"{rel}:{line} {name} ({n} lines)")
    assert not long, f"expected no function over {MAX_FUNCTION_LINES} lines, got: " + "; ".join(long)


def test_the_length_check_sees_a_long_function(tmp_path):
    """The length check is not vacuous: a 121-line function is counted as 121 lines."""
    src = tmp_path / "long.py"
    src.write_text("def f():\n" + "    x = 1\n" * 119 + "    return x\n")
    assert [n for _, _, n in _functions(src)] == [MAX_FUNCTION_LINES + 1]


def _module_imports(root: Path) -> dict[str, set[str]]:
    """``{module: {imported module of the package}}`` over every import statement of every module
    under ``root / "gmxai_eval"``: module level and inside functions, relative ones resolved,
    ``importlib.import_module("...")`` with a literal name included. ``from pkg import name``
    counts as importing ``pkg.name`` when that is a module, else ``pkg`` (its ``__init__``)."""
    import ast

    paths = {}
    for p in (root / "gmxai_eval").rglob("*.py"):
        parts = list(p.relative_to(root).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for mod, p in paths.items():
        pkg = mod if p.name == "__init__.py" else mod.rpartition(".")[0]
        out = edges.setdefault(mod, set())
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
                names = [str(node.args[0].value)]
            out |= {k for k in map(known, names) if k and k != mod}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_module_imports_itself_through_others():
    """No cycle between any two modules of the package, counting function-local imports and
    package ``__init__`` files (which the import-linter contract of siblings does not see)."""
    assert _cycles(_module_imports(ROOT)) == []


def test_the_cycle_check_sees_a_function_local_cycle(tmp_path):
    """A function-local import that closes a circle is found by both checks."""
    pkg = tmp_path / "gmxai_eval"
    shutil.copytree(ROOT / "gmxai_eval", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(pkg / "report" / "ranks.py", "a") as f:
        f.write("\n\ndef _late():\n    from gmxai_eval.report.tables import tex_escape  # noqa: F401\n")
    assert any({"gmxai_eval.report.ranks", "gmxai_eval.report.tables"} <= set(c)
               for c in _cycles(_module_imports(tmp_path)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode != 0 and "No cycles are allowed in gmxai_eval.report" in out.stdout
