"""``gmxai-eval report`` re-renders every output file of a run from its results alone."""

from __future__ import annotations

import json

import pytest

from gmxai_eval.cli import main
from gmxai_eval.errors import DataError
from gmxai_eval.runner.run import run_benchmark
from runner_report_toys import ToyGrad, ToyMass, toy_spec

FILES = ("leaderboard.md", "leaderboard.tex", "leaderboard.csv", "samples.csv", "report.html")


def test_report_rerenders_every_file_byte_for_byte_without_running_a_model(tmp_path, toys, capsys):
    spec = toy_spec(methods=["toy_grad", "toy_random"], evaluators=["toy_mass", "toy_deletion"],
                    html=True, examples=2, n_images=6).replace(reliability={"enabled": True, "n_images": 3})
    res = run_benchmark(spec, output=tmp_path / "runs", run_id="r", progress=False, verbose=False,
                        extra_sections=[("Extra", "<p id='trusted'>x</p>")])
    calls = (ToyGrad.calls, ToyMass.calls)
    assert main(["report", str(res.run_dir / "results.json"), "--out", str(tmp_path / "again")]) == 0
    assert (ToyGrad.calls, ToyMass.calls) == calls  # nothing explained or evaluated
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (res.run_dir / name).read_bytes(), name
    html = (tmp_path / "again" / "report.html").read_text()
    assert "Metric reliability" in html and "<p id='trusted'>x</p>" in html and "Example maps" in html
    assert json.loads((tmp_path / "again" / "results.json").read_text()) == json.loads(
        (res.run_dir / "results.json").read_text())

    # in place, the same bytes again
    before = {n: (res.run_dir / n).read_bytes() for n in FILES}
    assert main(["report", str(res.run_dir / "results.json")]) == 0
    assert {n: (res.run_dir / n).read_bytes() for n in FILES} == before


def test_report_without_its_sidecar_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"aggregates": []}))
    assert main(["report", str(tmp_path / "results.json")]) == 1
    assert "report_data.json" in capsys.readouterr().err
    from gmxai_eval.report.render import read_run

    with pytest.raises(DataError, match="report_data.json"):
        read_run(tmp_path / "results.json")
