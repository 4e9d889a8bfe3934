"""``gmxai-eval questionnaire make|analyse`` on a finished toy run."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from runner_report_toys import toy_spec, toys  # noqa: E402,F401

from gmxai_eval.analysis.questionnaire import ANSWERS_FORMAT  # noqa: E402
from gmxai_eval.cli import main  # noqa: E402
from gmxai_eval.runner.run import run_benchmark  # noqa: E402


@pytest.fixture
def run_json(tmp_path, toys):  # noqa: F811
    spec = toy_spec(methods=[{"name": "saliency", "label": "sal_x"}, {"name": "random", "label": "rnd_x"}],
                    evaluators=["toy_mass"])
    res = run_benchmark(spec, output=tmp_path / "runs", run_id="r", progress=False, verbose=False)
    return res.run_dir / "results.json"


def test_make_then_analyse(tmp_path, run_json, capsys):
    out = tmp_path / "q"
    assert main(["questionnaire", "make", str(run_json), "--cases", "3", "--methods", "sal_x,rnd_x",
                 "--out", str(out)]) == 0
    page = (out / "questionnaire.html").read_text()
    key = json.loads((out / "questionnaire-key.json").read_text())
    assert len(key["cases"]) == 3 and key["regions"] == ["left", "right"]
    assert "sal_x" not in page and "rnd_x" not in page
    assert page.count('data-field="rating"') == 3 * 2 * 5
    answers = tmp_path / "answers"
    answers.mkdir()
    for rater, good in (("r1", 5), ("r2", 4)):
        ans = [{"case": c["case"], "label": lab, "rating": good if m == "sal_x" else 1, "regions": [],
                "comment": ""} for c in key["cases"] for lab, m in c["labels"].items()]
        (answers / f"answers-{rater}.json").write_text(json.dumps(
            {"format": ANSWERS_FORMAT, "form_id": key["form_id"], "rater": rater, "answers": ans}))
    capsys.readouterr()
    assert main(["questionnaire", "analyse", str(answers), "--key", str(out / "questionnaire-key.json"),
                 "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert "2 used, 0 skipped" in text
    csv = (tmp_path / "a" / "questionnaire.csv").read_text().splitlines()
    assert csv[0].startswith("method,n,mean") and csv[1].startswith("sal_x,6,4.5")
    assert csv[2].startswith("rnd_x,6,1.0")


@pytest.mark.parametrize("args, msg", [
    (["--methods", "nope"], "expected labels of the run"),
    (["--methods", "sal_x", "--cases", "0"], "expected a positive integer"),
])
def test_make_bad_inputs_exit_1_or_2_and_write_nothing(tmp_path, run_json, capsys, args, msg):
    out = tmp_path / "q"
    with pytest.raises(SystemExit) if "--cases" in args else contextlib.nullcontext():
        rc = main(["questionnaire", "make", str(run_json), "--out", str(out), *args])
        assert rc == 1
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not out.exists()


def test_make_refuses_a_file_that_is_not_results_json(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["questionnaire", "make", str(bad), "--methods", "a", "--out", str(tmp_path / "q")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.json" in err[0] and "expected a gmxai_eval results.json" in err[0]


def test_make_reads_the_runs_map_cache(tmp_path, run_json, monkeypatch):
    """The maps come from the run's map cache (no method is called) and equal the maps computed
    afresh; without the cache they are computed."""
    import numpy as np

    from gmxai_eval.cli.questionnaire import cases_from_run
    from gmxai_eval.methods.base import Explainer

    results = json.loads(run_json.read_text())
    fresh, _ = cases_from_run(results, 3, ["sal_x", "rnd_x"], cache=None)

    def refuse(*a, **k):
        raise AssertionError("a map was computed instead of read from the run's cache")

    monkeypatch.setattr(Explainer, "__call__", refuse)
    cached, _ = cases_from_run(results, 3, ["sal_x", "rnd_x"], cache=run_json.parent.parent / ".cache")
    for a, b in zip(fresh, cached):
        assert a.case_id == b.case_id
        for m in ("sal_x", "rnd_x"):
            np.testing.assert_allclose(a.maps[m], b.maps[m], rtol=1e-6, atol=1e-7)
    out = tmp_path / "q"
    assert main(["questionnaire", "make", str(run_json), "--cases", "3", "--methods", "sal_x,rnd_x",
                 "--out", str(out)]) == 0
