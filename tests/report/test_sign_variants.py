"""Signed vs absolute variants: pairing of evaluator entries, Kendall tau and rank moves by hand,
the section in a run (results.json + report.html)."""

from __future__ import annotations

import pandas as pd
import pytest
import scipy.stats

from gmxai_eval.report.sign_variants import compare_variants, sign_variants_section, variant_pairs


def test_pairs_need_the_same_name_and_config_but_abs():
    base = {"steps": 28, "abs": False}
    entries = [("deletion", "deletion", base), ("insertion", "insertion", {"steps": 28, "abs": False}),
               ("deletion@abs", "deletion", {**base, "abs": True}),
               ("deletion@10", "deletion", {"steps": 10, "abs": True}),       # another config: no pair
               ("insertion@abs", "insertion", {"steps": 28, "abs": True}),
               ("sufficiency", "sufficiency", {"abs": True})]                 # no signed partner
    assert variant_pairs(entries) == [("deletion", "deletion@abs"), ("insertion", "insertion@abs")]
    assert variant_pairs([("a", "x", {"abs": False}), ("b", "y", {"abs": True})]) == []


def _table(scores):
    return pd.DataFrame([{"seed": 0, "evaluator": e, "method": m, "sample_id": f"s{i}", "score": v}
                         for e, per in scores.items() for m, vals in per.items() for i, v in enumerate(vals)])


def test_tau_and_moves_by_hand():
    # deletion: lower is better. signed means a .1, b .2, c .3, d .4 -> ranks 1..4
    # absolute: a .35, b .2, c .3, d .1 -> ranks a 4, b 2, c 3, d 1
    scores = {"del": {"a": [0.1, 0.1], "b": [0.2, 0.2], "c": [0.3, 0.3], "d": [0.4, 0.4]},
              "del@abs": {"a": [0.3, 0.4], "b": [0.2, 0.2], "c": [0.3, 0.3], "d": [0.1, 0.1]}}
    out = compare_variants(_table(scores), [("del", "del@abs")], ["a", "b", "c", "d"],
                           {"del": False, "del@abs": False}, signed_methods=["a", "d"])
    p = out["pairs"]["del"]
    assert p["ranks_signed"] == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert p["ranks_absolute"] == {"a": 4, "b": 2, "c": 3, "d": 1}
    ref = scipy.stats.kendalltau([0.1, 0.2, 0.3, 0.4], [0.35, 0.2, 0.3, 0.1]).statistic
    assert p["tau"] == pytest.approx(ref)
    assert [(m["method"], m["move"]) for m in p["moves"]] == [("a", 3), ("d", -3)] and p["n_moved"] == 2
    assert out["rows"] == [["del", "del@abs", pytest.approx(ref), 2, "a 1 → 4; d 4 → 1"]]
    assert "2 with signed maps" in out["caption"]
    title, frag = sign_variants_section({}, out)
    assert title == "Signed vs absolute relevance" and "a 1 → 4; d 4 → 1" in frag
    # identical variants (maps without negative values): tau 1, nothing moves
    same = compare_variants(_table({"x": scores["del"], "x@abs": scores["del"]}), [("x", "x@abs")],
                            ["a", "b", "c", "d"], {"x": True, "x@abs": True})
    assert same["pairs"]["x"]["tau"] == pytest.approx(1.0) and same["rows"][0][3:] == [0, "none"]


def test_section_without_pairs_says_so():
    out = compare_variants(_table({"x": {"a": [1.0]}}), [], ["a"], {"x": True})
    assert "No evaluator" in sign_variants_section({}, out)[1]
