"""`gmxai-eval compare`: planted regressions, direction from the card, tolerance, exit codes."""

from __future__ import annotations

import copy
import json

import pytest

from gmxai_eval.cli import main
from gmxai_eval.errors import DataError
from gmxai_eval.report.compare import compare_results, load_results


def doc():
    return {"aggregates": [
        {"evaluator": "insertion", "method": "m", "higher_is_better": True, "mean": 0.6, "ci_low": 0.55, "ci_high": 0.65},
        {"evaluator": "deletion", "method": "m", "higher_is_better": False, "mean": 0.2, "ci_low": 0.15, "ci_high": 0.25},
        {"evaluator": "deletion", "method": "other", "higher_is_better": False, "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4},
    ]}


def with_mean(d, ev, m, value):
    d = copy.deepcopy(d)
    for r in d["aggregates"]:
        if (r["evaluator"], r["method"]) == (ev, m):
            r["mean"] = value
    return d


def write(tmp_path, name, d):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def test_planted_regression_fails_and_names_the_pair(tmp_path, capsys):
    base = write(tmp_path, "base.json", doc())
    assert main(["compare", base, write(tmp_path, "same.json", doc())]) == 0
    assert "0 regression(s) in 3" in capsys.readouterr().out
    # deletion is lower-is-better: a higher mean beyond ci_high is a regression
    bad = write(tmp_path, "bad.json", with_mean(doc(), "deletion", "m", 0.26))
    assert main(["compare", base, bad]) == 1
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if "| deletion" in ln and "| m " in ln][0]
    assert "regressed" in line and "1 regression(s) in 3" in out
    # the same move in the better direction is an improvement
    assert main(["compare", base, write(tmp_path, "good.json", with_mean(doc(), "deletion", "m", 0.1))]) == 0
    # higher-is-better: below ci_low regresses; inside the interval does not
    assert main(["compare", base, write(tmp_path, "i1.json", with_mean(doc(), "insertion", "m", 0.54))]) == 1
    assert main(["compare", base, write(tmp_path, "i2.json", with_mean(doc(), "insertion", "m", 0.56))]) == 0


def test_tolerance_strict_and_method_filter(tmp_path):
    cand = with_mean(doc(), "insertion", "m", 0.56)  # worse by 0.04, inside the CI
    assert compare_results(doc(), cand).ok
    assert not compare_results(doc(), cand, tolerance=0.03).ok
    assert compare_results(doc(), cand, tolerance=0.05).ok
    missing = {"aggregates": doc()["aggregates"][:2]}
    assert compare_results(doc(), missing).ok and compare_results(doc(), missing).missing == [
        ("deletion", "other", "baseline")]
    assert not compare_results(doc(), missing, strict=True).ok
    bad = with_mean(doc(), "deletion", "other", 0.9)
    assert not compare_results(doc(), bad).ok and compare_results(doc(), bad, methods={"m"}).ok
    became_undefined = with_mean(doc(), "insertion", "m", None)
    assert not compare_results(doc(), became_undefined).ok


def test_bad_inputs(tmp_path, capsys):
    with pytest.raises(DataError, match="no file"):
        load_results(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="aggregates"):
        load_results(tmp_path / "x.json")
    assert main(["compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 1
    assert "DataError" in capsys.readouterr().err


def test_zero_width_interval_float_noise_is_not_a_regression():
    base = {"aggregates": [{"evaluator": "mprt_cascading", "method": "sobel", "higher_is_better": False,
                            "mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}]}
    assert compare_results(base, with_mean(base, "mprt_cascading", "sobel", 1.0 + 2e-7)).ok
    assert not compare_results(base, with_mean(base, "mprt_cascading", "sobel", 1.0 + 1e-4)).ok
