"""Every text a user controls (method and evaluator labels, the run name, class names, sample
and subject ids) is escaped in every output of a run, on every line (titles, legends, alias and
flag lines, captions), not only in table cells:

* Markdown and HTML: no markup from a label (``<img ... onerror=...>``, ``<script>``) and no
  line of its own from a line break inside a label;
* LaTeX: no command from a label (``\\input{x}``) and no special character unescaped;
* CSV: no cell a spreadsheet reads as a formula.

Oracle: the hostile strings are known, and so is how each format neutralises them; the run is
built so that the flag and alias lines (which once carried labels raw) are present."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest
import torch
from runner_report_toys import ToyFaces, toy_spec

from gmxai_eval.data.base import DATASETS
from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.types import MethodCard

TAG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
TEX = "\\input{x}_%$#"
BREAK = "\nNEWLINE_TOKEN"  # a label with a line break must not open a line (a heading, a list, a row)
TEXT_FILES = (".md", ".html", ".tex", ".csv", ".txt", ".json")


class ToyNegative(Explainer):
    """A real method whose maps are never positive: it scores 0 on ``toy_mass``, so the random
    control beats it and the leaderboard carries a flag line naming both labels."""

    card = MethodCard(name="toy_negative", family="gradient", signed=True, paper="test")

    def _attribute(self, model, x, target):
        return -x.mean(1) - 1.0


def hostile_faces(n: int = 8, seed: int = 0) -> ToyFaces:
    from gmxai_eval.testing import toy_samples

    ds = ToyFaces(dataclasses.replace(s, image_id=f"=id{i}{TAG}", subject=f"@subj{i // 2}{SCRIPT}")
                  for i, s in enumerate(toy_samples(n, seed=seed)))
    ds.classes = [f"+class{k}{TAG}{TEX}" for k in range(4)]
    return ds


@pytest.fixture
def hostile_run(tmp_path, toys):
    from gmxai_eval.runner.run import run_benchmark

    DATASETS.unregister("toy_faces")
    DATASETS.register(hostile_faces, name="toy_faces")
    METHODS.register(ToyNegative)
    try:
        spec = toy_spec(
            methods=[{"name": "toy_grad", "label": f"=grad{TAG}{TEX}"},
                     {"name": "toy_negative", "label": f"-neg{SCRIPT}{BREAK}"},
                     {"name": "toy_random", "label": f"@random|{TAG}{BREAK}"}],
            evaluators=[{"name": "toy_mass", "label": f"+mass{TAG}{TEX}"},
                        {"name": "toy_deletion", "label": f"=del{SCRIPT}{BREAK}"},
                        {"name": "toy_deletion", "label": f"@del2{TAG}"}],  # identical: an alias line
            name=f"run{TAG}", html=True)
        run_benchmark(spec, output=tmp_path / "out", run_id="r", progress=False, verbose=False)
    finally:
        METHODS.unregister("toy_negative")
    return tmp_path / "out" / "r"


def _formula(cell: str) -> bool:
    if not cell or cell[0] not in "=+-@\t\r":
        return False
    try:
        float(cell)
        return False
    except ValueError:
        return True


def test_every_line_of_every_output_is_escaped(hostile_run):
    files = sorted(f for f in hostile_run.rglob("*") if f.is_file() and f.suffix in TEXT_FILES)
    names = {f.name for f in files}
    assert {"leaderboard.md", "leaderboard.tex", "leaderboard.csv", "samples.csv", "report.html"} <= names
    md = (hostile_run / "leaderboard.md").read_text()
    # the lines that once carried labels raw are there (so the scan below covers them)
    assert "**Flags**" in md and "**Identical evaluators**" in md
    flags = md.split("**Flags**")[1]
    # the control flag names the control (escaped); the hostile method label is escaped elsewhere in the file
    assert "@random|&lt;img src=x onerror=alert(1)&gt;" in flags and "&lt;script&gt;alert(2)&lt;/script&gt;" in md
    problems = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        lines = text.splitlines()
        if f.suffix in (".md", ".html"):
            problems += [f"{f.name}:{i}: markup from a label" for i, ln in enumerate(lines, 1)
                         if "<img src=x" in ln or "<script>alert" in ln]
        if f.suffix in (".md", ".tex"):
            problems += [f"{f.name}:{i}: a line opened by a label's line break" for i, ln in enumerate(lines, 1)
                         if ln.lstrip("|-# ").startswith("NEWLINE_TOKEN")]
        if f.suffix == ".tex":
            problems += [f"{f.name}:{i}: LaTeX from a label" for i, ln in enumerate(lines, 1)
                         if "\\input{x}" in ln or "_%$#" in ln]
        if f.suffix == ".csv":
            problems += [f"{f.name}: formula cell {c[:40]!r}" for row in csv.reader(io.StringIO(text))
                         for c in row if _formula(c)]
    assert not problems, "\n".join(problems)


def test_the_scan_would_catch_raw_labels(hostile_run):
    """The oracle of the scan: the raw labels are in the data (results.json keeps them as they
    are), so an unescaped copy in a rendered file would be found."""
    raw = (hostile_run / "results.json").read_text()
    assert "<img src=x onerror=alert(1)>" in raw and "\\\\input{x}" in raw and "\\nNEWLINE_TOKEN" in raw


def _scan(name: str, text: str) -> list[str]:
    """The checks above for one Markdown or CSV text."""
    if name.endswith(".csv"):  # data, not rendered: raw text is kept, formulas are not
        return [f"{name}: formula {c[:40]!r}" for r in csv.reader(io.StringIO(text)) for c in r if _formula(c)]
    lines = text.splitlines()
    out = [f"{name}:{i}: markup" for i, ln in enumerate(lines, 1) if "<img src=x" in ln or "<script>alert" in ln]
    out += [f"{name}:{i}: line break" for i, ln in enumerate(lines, 1) if ln.lstrip("|-# ").startswith("NEWLINE_TOKEN")]
    return out


def test_questionnaire_outputs_are_escaped():
    """The questionnaire's Markdown and CSVs (method labels, file names from the answers)."""
    import pandas as pd

    from gmxai_eval.analysis.questionnaire import Analysis
    from gmxai_eval.utils import csv_safe_frame

    label = f"=m{TAG}{BREAK}"
    per = pd.DataFrame({"n": [3], "mean": [4.0], "region": [f"@r{SCRIPT}"]}, index=pd.Index([label], name="method"))
    a = Analysis(ratings=pd.DataFrame({"rater": [f"+r{TAG}"], "method": [label], "rating": [4]}), per_method=per,
                 alpha=None, files={"read": 2, "used": 1, "skipped": 1},
                 problems=[f"answers-{TAG}.json: {SCRIPT}{BREAK}"])
    problems = _scan("questionnaire.md", a.markdown())
    problems += _scan("questionnaire.csv", csv_safe_frame(a.per_method).to_csv())
    problems += _scan("ratings.csv", csv_safe_frame(a.ratings).to_csv(index=False))
    assert not problems, problems
    assert "&lt;img src=x onerror=alert(1)&gt;" in a.markdown()


def test_gaze_outputs_are_escaped(tmp_path, capsys):
    """``gaze``: image ids and region names from the images file, the study's name, method
    labels: ``gaze_table.md`` and every CSV."""
    import json

    import numpy as np

    from gmxai_eval.cli import main
    from gmxai_eval.testing import toy_face

    faces = [toy_face(f"=f{i}{TAG}", size=32, seed=i, label=i % 2) for i in range(4)]
    npz = tmp_path / "faces.npz"
    np.savez(npz, images=torch.stack([s.image for s in faces]).numpy(), image_ids=np.array([s.image_id for s in faces]),
             labels=np.array([s.label for s in faces]), landmarks=torch.stack([s.landmarks for s in faces]).numpy(),
             evidence=torch.stack([s.evidence for s in faces]).numpy(),
             region_masks=torch.stack([s.region_masks for s in faces]).numpy(),
             region_names=np.array([f"@up{SCRIPT}", f"-low{TAG}"]))
    sim = tmp_path / "sim"
    assert main(["gaze-simulate", "--images", str(npz), "--out", str(sim), "--observers", "2"]) == 0
    study = json.loads((sim / "study.json").read_text())
    (sim / "study.json").write_text(json.dumps({**study, "name": f"study{SCRIPT}{BREAK}"}))
    out = tmp_path / "out"
    assert main(["gaze", "--fixations", str(sim / "fixations.csv"), "--study", str(sim / "study.json"),
                 "--images", str(npz), "--methods", "saliency", "--model", "toy_cnn", "--metrics", "nss",
                 "--n-boot", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    files = sorted(f for f in out.rglob("*") if f.is_file() and f.suffix in (".md", ".csv")
                   and ".cache" not in f.relative_to(out).parts)  # the table and the gaze run's tables
    assert {"gaze_table.md", "gaze_table.csv", "gaze_per_image.csv", "gaze_aoi.csv"} <= {f.name for f in files}
    problems = [p for f in files for p in _scan(str(f.relative_to(out)), f.read_text())]
    assert not problems, problems
    md = (out / "gaze_table.md").read_text()
    assert "study&lt;script&gt;" in md and "@up&lt;script&gt;" in md
