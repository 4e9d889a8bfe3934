"""benchmarks/gpu_check.sh is run on a lent GPU; on a machine without one it must say so in one
line and exit 2 without running anything (the part of the script a CPU can test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run the script itself")
def test_gpu_check_without_a_gpu_exits_2_with_one_clear_line(tmp_path):
    p = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "expected a CUDA device, got none" in lines[0]
    assert "Traceback" not in p.stdout + p.stderr
    assert not (tmp_path / "out" / "gpu_figures.md").exists()  # nothing was run
