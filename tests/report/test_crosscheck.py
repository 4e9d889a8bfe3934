"""The cross-check of the travelling truths against the planted one, on a per-sample table whose
answer is known by construction, and its statements in the validity page."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gmxai_eval.report.validity import crosscheck_section, crosscheck_statement, validity_markdown

# truth quality of each method: the planted truth ranks b@0 > c > b@50 > b@100 > random
TRUTH = {"b@0": 4.0, "c": 3.0, "b@50": 2.0, "b@100": 1.0, "random": 0.0}
MIDDLE = {"b@0": 4.0, "random": 3.0, "b@50": 2.0, "b@100": 1.0, "c": 0.0}  # known order kept, 5 of 10 pairs wrong
METHODS = {**{f"b@{lv}": {"name": "degraded", "config": {"base": "b", "base_config": {}, "level": lv / 100}}
              for lv in (0, 50, 100)},
           "c": {"name": "c", "config": {}}, "random": {"name": "random", "config": {}},
           "oracle": {"name": "oracle", "config": {}, "card": {"reference": True}}}
CARDS = {"cf": {"name": "counterfactual_region_rank", "category": "counterfactual", "higher_is_better": True},
         "pt": {"name": "patch_truth", "category": "perturbation", "higher_is_better": True},
         "mid": {"name": "deletion", "category": "perturbation", "higher_is_better": False},
         "rev": {"name": "insertion", "category": "perturbation", "higher_is_better": True}}


def _table(n=30, noise=0.05):
    rng = np.random.default_rng(0)
    q = {"cf": TRUTH, "pt": TRUTH, "mid": {m: -v for m, v in MIDDLE.items()},  # lower is better
         "rev": {m: -v for m, v in TRUTH.items()}}
    rows = []
    for i in range(n):
        for ev, qual in q.items():
            for m in METHODS:
                score = qual.get(m, 9.0) + noise * rng.standard_normal()
                rows.append({"seed": 0, "evaluator": ev, "method": m, "sample_id": f"s{i}", "subject": f"p{i // 2}",
                             "score": score})
    return pd.DataFrame(rows)


def test_crosscheck_recovers_the_constructed_agreements():
    cc = crosscheck_section(_table(), CARDS, METHODS, n_boot=200, seed=0)
    assert cc["primary"] == "cf" and cc["travelling"] == ["pt"] and "oracle" not in cc["methods"]
    assert cc["undegraded"] == ["b@0", "c", "random"] and cc["resampling_unit"] == "subject" and cc["n_units"] == 15
    mr = cc["method_rankings"]
    assert mr["pt"]["cf"]["all"] == {"tau": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n_methods": 5}
    assert mr["rev"]["cf"]["all"]["tau"] == -1.0 and mr["mid"]["cf"]["all"]["tau"] == 0.0
    assert mr["mid"]["cf"]["undegraded"]["tau"] == pytest.approx(1 / 3)  # b@0 > random > c vs b@0 > c > random
    er = cc["evaluator_rankings"]["cf"]
    # known-order taus (pt 1, mid 1, rev -1) against taus vs the truth (1, 0, -1): tau-b = 2 / sqrt(2 * 3)
    assert er["tau"] == pytest.approx(2 / math.sqrt(6)) and er["ci_low"] == er["ci_high"] == er["tau"]
    assert er["evaluators"]["mid"]["known_order"]["tau"] == 1.0 and er["evaluators"]["mid"]["vs_truth"]["tau"] == 0.0
    assert sorted(er["same_verdict"]) == ["pt", "rev"] and er["n_evaluators"] == 3


def test_crosscheck_ci_widens_with_noise_and_needs_a_truth():
    noisy = crosscheck_section(_table(noise=3.0), CARDS, METHODS, n_boot=200, seed=0)
    r = noisy["method_rankings"]["pt"]["cf"]["all"]
    assert r["ci_low"] < r["tau"] <= r["ci_high"] and r["ci_high"] - r["ci_low"] > 0.2
    assert crosscheck_section(_table(), {k: v for k, v in CARDS.items() if k != "cf"}, METHODS) is None


def test_statements_name_the_taus_with_their_cis():
    cc = crosscheck_section(_table(), CARDS, METHODS, n_boot=200, seed=0)
    results = {"run_id": "r", "validity": {"truth": ["cf"], "evaluators": {}, "crosscheck": cc},
               "evidence": {"drop": 0.25, "ci_low": 0.2, "ci_high": 0.3, "n": 30, "n_units": 15,
                            "resampling_unit": "subject", "uses_evidence": True}}
    text = crosscheck_statement(results)
    assert "pt 1.00 [1.00, 1.00]" in text[0] and "0.82 [0.82, 0.82]" in text[1] and "2 of 3" in text[1]
    md = validity_markdown(results)
    assert "uses the planted evidence" in md and "differ on: mid" in md
