"""The layers and the lint rules of ``pyproject.toml`` hold: ``lint-imports`` (the import-linter
contracts: data flows one way, the report never runs a model) and ``ruff check`` pass."""

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
