"""Progress when output is not a terminal: a line per stage and done/total/ETA lines on a clock,
never silent, never a bar's control characters; a terminal gets a bar; --no-progress nothing."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from gmxai_eval.progress import LineProgress, progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_line_progress_prints_on_its_interval_with_eta():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(10, "evaluate", unit="units", interval=30, stream=out, clock=clock)
    for _ in range(4):
        clock.t += 10
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "evaluate: started, 10 units"
    assert lines[1] == "evaluate: 3/10 units (30 %), 0:30 elapsed, ETA 1:10"  # 0.1 units/s, 7 left
    assert lines[2] == "evaluate: done, 4/10 units in 0:40"
    assert len(lines) == 3 and "\r" not in out.getvalue()


def test_auto_progress_is_lines_off_a_terminal_and_silent_when_disabled(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    out = io.StringIO()
    assert isinstance(progress(3, "x", None, stream=out), LineProgress)
    quiet = progress(3, "x", False, stream=out)
    quiet.update(3)
    quiet.close()
    assert out.getvalue() == "x: started, 3 it\n"


def test_a_piped_run_prints_a_line_per_stage(tmp_path):
    """The real command with stderr a pipe: every stage announces itself."""
    spec = tmp_path / "s.toml"
    spec.write_text("[run]\nname = 'p'\nn_images = 4\nselect = 'first'\nbatch_size = 2\nbootstrap = 100\n"
                    "html = false\n[model]\nsource = 'registry'\narch = 'linear'\nconfig = {num_classes = 4}\n"
                    "[dataset]\npath = 'faces.csv'\n[[methods]]\nname = 'saliency'\n"
                    "[[evaluators]]\nname = 'sparseness'\n")
    import numpy as np
    from PIL import Image

    rows = ["path,label"]
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{'abcd'[i]}")
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "GMXAI_PROGRESS_SECONDS": "0",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "gmxai_eval", "run", str(spec), "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    for stage in ("load", "attribute", "evaluate", "report"):
        assert f"stage {stage}: started" in p.stdout and f"stage {stage}: done in" in p.stdout, stage
    assert "attribute: 1/2" in p.stdout or "attribute: 2/2" in p.stdout
    assert "\r" not in p.stdout + p.stderr
    q = subprocess.run([sys.executable, "-m", "gmxai_eval", "run", str(spec), "--output", str(tmp_path / "o"),
                        "--run-id", "quiet", "--no-progress"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert q.returncode == 0 and "stage " not in q.stdout + q.stderr
