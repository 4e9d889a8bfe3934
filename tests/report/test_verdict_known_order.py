"""Without a truth, the verdict's faithfulness basis keeps only the evaluators that recover the
known order of degraded copies (tau interval above 0)."""

from __future__ import annotations

from gmxai_eval.report.verdict import with_known_order

RANKINGS = {"overall": {"a": {"rank": 1}, "b": {"rank": 2}},
            "by_evaluator": {"del": {"a": 1, "b": 2}, "ins": {"a": 2, "b": 1}}}
NO_TRUTH = {"has_truth": False, "faithfulness_evaluators": ["del", "ins"], "basis": "x"}


def test_only_evaluators_recovering_the_known_order_vote():
    ko = {"evaluators": {"del": {"tau": 0.8, "ci_low": 0.4, "ci_high": 1.0},
                         "ins": {"tau": 0.1, "ci_low": -0.3, "ci_high": 0.5}}}
    out = with_known_order(dict(NO_TRUTH), ko, RANKINGS)
    assert out["faithfulness_evaluators"] == ["del"] and out["known_order_excluded"] == ["ins"]
    assert out["faithfulness"]["a"]["rank"] == 1 and out["faithfulness"]["b"]["rank"] == 2  # deletion's order
    assert "known-order" in out["basis"]


def test_truth_runs_and_runs_without_copies_are_unchanged():
    truth = {"has_truth": True, "faithfulness_evaluators": ["del"]}
    assert with_known_order(truth, {"evaluators": {"del": {"ci_low": -1}}}, RANKINGS) is truth
    assert with_known_order(NO_TRUTH, None, RANKINGS) is NO_TRUTH
