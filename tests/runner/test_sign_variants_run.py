"""The ``sign_variants`` section in a run: deletion scored on signed and on absolute maps, the
section's ranks equal the leaderboard's ranks of the two evaluators, and report.html shows it."""

from __future__ import annotations

from gmxai_eval.runner.run import run_benchmark
from runner_report_toys import toy_spec


def test_sign_variants_section_in_a_run(tmp_path, toys):
    spec = toy_spec(methods=["toy_grad", "toy_random", "saliency"],
                    evaluators=[{"name": "deletion", "config": {"steps": 4}},
                                {"name": "deletion", "label": "deletion@abs", "config": {"steps": 4, "abs": True}}],
                    html=True).replace(sections=["sign_variants"])
    res = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False)
    data = res.results["sections"]["sign_variants"]
    pair = data["pairs"]["deletion"]
    assert pair["absolute"] == "deletion@abs"
    by_ev = res.results["rankings"]["by_evaluator"]
    assert pair["ranks_signed"] == by_ev["deletion"] and pair["ranks_absolute"] == by_ev["deletion@abs"]
    # the random control's map is non-negative: its scores are the same in both variants
    t = res.table
    rnd = t[t.method == "toy_random"].pivot_table(index="sample_id", columns="evaluator", values="score")
    assert (rnd["deletion"] == rnd["deletion@abs"]).all()
    html = (res.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Signed vs absolute relevance" in html
