"""Every Python example of the README runs as written.

Each ```python block of README.md starts with a comment that names what it needs: either the
path of the test file it is (``# tests/test_my_method.py``), or ``# needs: ...``. This test
provides exactly what the comment names (a user's model file and weights, released-weights
files of the right architecture, the embedded default's data root) in a fresh folder and runs
the block unchanged in a subprocess, so an example that drifts from the API fails here. A block
without such a comment fails the test, so new examples cannot skip it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block of the README."""
    lines = README.read_text(encoding="utf-8").splitlines()
    out, start = [], None
    for i, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = i
        elif start is not None and line.strip() == "```":
            out.append((start, "\n".join(lines[start:i - 1]) + "\n"))
            start = None
    return out


BLOCKS = python_blocks()

NET = textwrap.dedent("""
    import torch
    from torch import nn

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.base = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(7)])
        def forward(self, x):
            return self.base(x)

    class Net(nn.Module):
        def __init__(self, num_classes=12):
            super().__init__()
            self.backbone = Backbone()
            self.fc = nn.Linear(8, num_classes)
        def forward(self, x):
            return self.fc(self.backbone(x).mean((2, 3)))

    def build(num_classes=12):
        torch.manual_seed(0)
        return Net(num_classes).eval()
""")

# What a "# needs:" comment may name, and the code or files that provide it.
PRELUDES = {
    "x_numpy": "import numpy as _np\n_rng = _np.random.default_rng(0)\n"
               "x_numpy = _rng.random((4, 3, 32, 32), dtype=_np.float32)\n",
    "y": "y = _np.array([0, 1, 2, 3])\n",
}

# Checks appended to blocks that only define something: the definition must work when used.
CHECKS = {
    "gradient_squared": textwrap.dedent("""
        from gmxai_eval.methods import create_method
        from gmxai_eval.models import MODELS
        _m = MODELS.create("toy_cnn", num_classes=4, seed=0)
        _x = torch.rand(2, 3, 32, 32)
        _a = create_method("gradient_squared")(_m, _x, torch.tensor([0, 1]))
        assert _a.shape == (2, 32, 32) and bool((_a >= 0).all()), _a.shape
    """),
    "top_fraction": textwrap.dedent("""
        import torch
        from gmxai_eval.evaluators import create_evaluator
        from gmxai_eval.models import MODELS
        _m = MODELS.create("toy_cnn", num_classes=4, seed=0)
        _x = torch.rand(2, 3, 32, 32)
        _s = create_evaluator("top_fraction")(_m, _x, torch.tensor([0, 1]), torch.rand(2, 32, 32)).scores
        assert _s.shape == (2,) and bool(((_s > 0) & (_s <= 1)).all()), _s
    """),
    "threads": textwrap.dedent("""
        from gmxai_eval.execution import EXECUTORS
        assert EXECUTORS.get("threads")().map(abs, [-1, -2]) == [1, 2]
    """),
}


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("GMXAI_DATA", str(ROOT / "datasets"))   # the embedded default, as the suite uses it
    env["GMXAI_CACHE"] = str(tmp_path / "user-cache")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("GMXAI_UPDATE_BASELINE", None)
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=600)


def _leading_comment(code: str) -> str:
    """The comment lines a block starts with (its ``# needs:`` may wrap over several)."""
    lines = code.lstrip().splitlines()
    n = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    return "\n".join(lines[:n])


def _provide(needs: str, folder: Path) -> str:
    """Create the files a ``# needs:`` line names in ``folder``; return code to run first."""
    prelude = ""
    if "mynet.py" in needs:
        (folder / "mynet.py").write_text(NET)
        # a private module name: another test may have imported a different "mynet" already
        spec = importlib.util.spec_from_file_location("_readme_example_mynet", folder / "mynet.py")
        mynet = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mynet)
        torch.save(mynet.build(12).state_dict(), folder / "weights.pt")
    for name, code in PRELUDES.items():
        if re.search(rf"\b{name}\b", needs):
            prelude += code
    if "gestaltmatcher_v1.pth" in needs:
        from gmxai_eval.models.gestaltmatcher import FaceRecogNet

        sd = FaceRecogNet(139, 1).state_dict()
        torch.save({f"module.{k}": v for k, v in sd.items()}, folder / "gestaltmatcher_v1.pth")
    if "glint360k_r100.pth" in needs:
        from gmxai_eval.models import MODELS

        sd = MODELS.create("iresnet100", num_classes=204).backbone.state_dict()
        torch.save(sd, folder / "glint360k_r100.pth")
        torch.save(sd, folder / "finetuned.pth")
    return prelude


def test_every_python_block_names_what_it_needs():
    assert len(BLOCKS) >= 6, f"expected the README's Python examples, found {len(BLOCKS)}"
    for line, code in BLOCKS:
        first = code.lstrip().splitlines()[0]
        assert first.startswith("# needs:") or re.match(r"# tests/\S+\.py$", first), \
            f"README.md line {line}: an example must start with '# needs: ...' or its test-file path, got {first!r}"


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README-L{n}" for n, _ in BLOCKS])
def test_readme_example_runs(line, code, tmp_path):
    first = code.lstrip().splitlines()[0]
    m = re.match(r"# (tests/\S+\.py)$", first)
    if m:   # a pytest file: the first run writes the baseline and skips, the second compares
        target = tmp_path / m.group(1)
        target.parent.mkdir(parents=True)
        target.write_text(code)
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", m.group(1)]
        first_run = _run(args, tmp_path)
        assert first_run.returncode == 0 and "1 skipped" in first_run.stdout, first_run.stdout + first_run.stderr
        assert "baseline" in first_run.stdout, first_run.stdout
        second = _run(args, tmp_path)
        assert second.returncode == 0 and "1 passed" in second.stdout, second.stdout + second.stderr
        return
    if not first.startswith("# needs:"):
        pytest.fail(f"README.md line {line}: no '# needs:' comment")
    prelude = _provide(_leading_comment(code), tmp_path)
    checks = "".join(c for key, c in CHECKS.items() if f'"{key}"' in code)
    script = tmp_path / "example.py"
    script.write_text(prelude + code + checks)
    done = _run([sys.executable, str(script)], tmp_path)
    assert done.returncode == 0, f"README.md line {line} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
