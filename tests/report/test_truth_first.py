"""The counterfactual truth as a reference row: where each evaluator ranks it ("ranks truth
first" in the validity table, the § mark in the leaderboard header), by hand on a small table."""

from __future__ import annotations

import pandas as pd

from gmxai_eval.report.aggregate import summarise
from gmxai_eval.report.tables import MARK_ORACLE, MARK_TRUTH, evaluator_marks, leaderboard_markdown
from gmxai_eval.report.validity import validity_markdown, validity_rows

#: per-image scores: on "agree" the truth is best, on "beaten" m1 beats it (the evidence oracle
#: is worst on both), on "lower" (lower is better) the truth is best again
SCORES = {
    "agree": {"m1": [0.5, 0.6, 0.4, 0.5], "m2": [0.2, 0.3, 0.1, 0.2], "truth": [0.9, 0.8, 0.9, 0.8],
              "oracle": [0.0, 0.1, 0.0, 0.1]},
    "beaten": {"m1": [0.9, 0.9, 0.8, 0.9], "m2": [0.2, 0.3, 0.1, 0.2], "truth": [0.5, 0.6, 0.4, 0.5],
               "oracle": [0.0, 0.1, 0.0, 0.1]},
    "lower": {"m1": [0.5, 0.6, 0.4, 0.5], "m2": [0.2, 0.3, 0.1, 0.2], "truth": [0.0, 0.1, 0.0, 0.1],
              "oracle": [0.9, 0.8, 0.9, 0.8]},
}
CARDS_E = {"agree": {"higher_is_better": True, "category": "counterfactual"},
           "beaten": {"higher_is_better": True, "category": "perturbation"},
           "lower": {"higher_is_better": False, "category": "perturbation"}}
CARDS_M = {"m1": {"control": False}, "m2": {"control": False},
           "truth": {"name": "counterfactual_oracle", "reference": "counterfactual"},
           "oracle": {"name": "oracle", "control": True, "reference": "evidence"}}


def table() -> pd.DataFrame:
    return pd.DataFrame([{"seed": 0, "evaluator": e, "method": m, "sample_id": f"s{i}", "subject": f"p{i}",
                          "score": v}
                         for e, per in SCORES.items() for m, vals in per.items() for i, v in enumerate(vals)])


def test_truth_is_a_reference_and_its_rank_is_reported():
    doc = summarise(table(), CARDS_E, CARDS_M, n_boot=100, seed=0)
    assert set(doc["rankings"]["reference"]) == {"truth", "oracle"}
    assert set(doc["rankings"]["overall"]) == {"m1", "m2"}  # references get no overall rank
    val = doc["validity"]
    assert val["truth_methods"] == ["truth"]
    ev = val["evaluators"]
    assert (ev["agree"]["truth_rank"], ev["agree"]["ranks_truth_first"]) == ({"truth": 1}, True)
    assert (ev["beaten"]["truth_rank"], ev["beaten"]["ranks_truth_first"]) == ({"truth": 2}, False)
    assert (ev["lower"]["truth_rank"], ev["lower"]["ranks_truth_first"]) == ({"truth": 1}, True)
    assert ev["beaten"]["oracle_rank"] == {"truth": 2, "oracle": 3}
    # flags: the evidence oracle is beaten everywhere (°); the truth only on "beaten" (§)
    assert [doc["oracle_flags"][e]["flag"] for e in SCORES] == [True, True, True]
    assert [doc["oracle_flags"][e]["truth_flag"] for e in SCORES] == [False, True, False]
    assert evaluator_marks(doc, "beaten").endswith(MARK_ORACLE + MARK_TRUTH)
    assert MARK_TRUTH not in evaluator_marks(doc, "agree") + evaluator_marks(doc, "lower")


def test_rendered_tables_show_the_column_and_the_mark():
    doc = {**summarise(table(), CARDS_E, CARDS_M, n_boot=100, seed=0), "run_id": "r"}
    headers, rows = validity_rows(doc)
    col = headers.index("ranks truth first")
    assert {r[0]: r[col] for r in rows} == {"agree": "yes", "beaten": "no (rank 2)", "lower": "yes"}
    assert "ranks truth first" in validity_markdown(doc)
    md = leaderboard_markdown({**doc, "methods": {m: {"card": c} for m, c in CARDS_M.items()},
                               "evaluators": {e: {"card": c} for e, c in CARDS_E.items()}})
    assert f"beaten ↑{MARK_ORACLE}{MARK_TRUTH}" in md and "does not rank the counterfactual truth (truth) first" in md
    assert "So is the counterfactual truth (truth:" in md


def test_no_truth_method_no_column():
    t = table()
    doc = summarise(t[t.method != "truth"], CARDS_E, {k: v for k, v in CARDS_M.items() if k != "truth"}, n_boot=50)
    assert doc["validity"]["truth_methods"] == []
    assert all(r["ranks_truth_first"] is None for r in doc["validity"]["evaluators"].values())
    assert "ranks truth first" not in validity_rows(doc)[0]
