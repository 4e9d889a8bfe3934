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


def test_synth_and_training_print_lines_off_a_terminal_and_nothing_when_quiet(tmp_path, monkeypatch, capsys):
    """Data generation and training go through the same progress: off a terminal a start line,
    done/total lines (every update with a 0 s interval) and a done line; a bar only on a terminal."""
    import re

    from gmxai_eval.data.synth import SynthConfig, SyntheticFaces, generate
    from gmxai_eval.models.train import TrainConfig, train_model

    monkeypatch.setenv("GMXAI_PROGRESS_SECONDS", "0")
    cfg = SynthConfig(num_images=24, num_syndromes=2, imbalance=1.0)
    folder = generate(cfg, name="p", root=tmp_path, progress=True, batch_size=8, workers=0)
    out = capsys.readouterr()  # capsys: stderr is not a terminal
    lines = out.out.splitlines()
    assert lines[0] == "synth p: started, 24 img"
    assert [int(m.group(1)) for m in map(re.compile(r"synth p: (\d+)/24 img \(\d+ %\)").match, lines) if m] == [8, 16, 24]
    assert re.fullmatch(r"synth p: done, 24/24 img in \d+:\d\d", lines[-1])
    assert "\r" not in out.out + out.err and out.err == ""

    ds = SyntheticFaces(folder, with_masks=False)
    tcfg = TrainConfig(arch="toy_cnn", epochs=2, batch_size=8, threads=1)
    train_model(ds, len(ds.classes), tcfg, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train: started, 6 step"  # 2 epochs x ceil(24 / 8)
    steps = [re.match(r"train: (\d+)/6 step \(\d+ %\), \d+:\d\d elapsed(, ETA \d+:\d\d)?( \[loss=[\d.]+\])?$", s)
             for s in lines[1:-1]]
    assert all(steps) and [int(m.group(1)) for m in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[3].group(2)  # after the first epoch the line carries its loss
    assert re.fullmatch(r"train: done, 6/6 step in \d+:\d\d", lines[-1])

    generate(cfg, name="q", root=tmp_path, progress=False, workers=0)
    train_model(ds, len(ds.classes), tcfg, progress=False)
    out = capsys.readouterr()
    assert out.out == out.err == ""


def test_a_terminal_gets_a_bar_for_synth_and_training(monkeypatch):
    from gmxai_eval.data.synth import build
    from gmxai_eval.models import train

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    bar = train._bar(3, True)
    assert type(bar).__module__.startswith("tqdm")
    bar.close()
    with build._progress(3, "synth", True) as tick:
        assert type(tick.__self__).__module__.startswith("tqdm")
